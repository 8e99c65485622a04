# TensorFlow Lite Micro for a bare-metal board, built from the pinned sources of the shared folder
# ($(FACEVERIF_SHARED)/third_party, its README.md: what makes a working interpreter and with which
# flags). Read there at build time, never copied into the repository. A board's Makefile sets
#   TFLM_THIRD_PARTY  the third_party folder (host_tools passes pvcore.paths.shared_path("third_party"))
#   TFLM_CONV         ref | cmsis   the CONV_2D kernel: TFLM's reference one or the CMSIS-NN wrapper
#   TFLM_FC           ref | cmsis   the FULLY_CONNECTED kernel, likewise
#   TFLM_ARCH_FLAGS   the core's -mcpu/-mfpu flags; CROSS the toolchain prefix
# and includes this file; it defines TFLM_LIB (the interpreter, the kernels that have one implementation
# only — L2_NORMALIZATION and QUANTIZE, reference — and CMSIS-NN's functions, an archive),
# TFLM_KERNEL_OBJS (the two kernels picked: linked as objects, since the reference and the CMSIS-NN
# files define the same registration functions), TFLM_CXXFLAGS (what code that includes TFLM's headers
# compiles with) and the rules that build them.
#
# The objects and the archive go to a cache folder keyed by a hash of the compiler, the flags and every
# file of third_party (TFLM_CACHE/<key>/, default .cache/tflm of the repository, ignored by git): the
# library is compiled once per flag set (reference; CMSIS-NN) and every later firmware build, in any
# build folder, only links. Every output is written under a temporary name and renamed (two builds may
# share the cache).
ifeq ($(strip $(TFLM_THIRD_PARTY)),)
$(error TFLM_THIRD_PARTY is not set: the third_party folder of the shared data (../shared/third_party))
endif
TFLM_TP := $(abspath $(TFLM_THIRD_PARTY))
ifeq ($(wildcard $(TFLM_TP)/tflite-micro/tensorflow/lite/micro/micro_interpreter.cc),)
$(error $(TFLM_TP) holds no TFLite Micro sources (tflite-micro/); point TFLM_THIRD_PARTY or FACEVERIF_SHARED at the shared folder)
endif
TFLM_CONV ?= ref
TFLM_FC ?= ref
TFLM_CACHE ?= $(abspath $(PV_TEMPLATES)/../.cache/tflm)
TFLM_CMSIS := $(if $(filter cmsis,$(TFLM_CONV) $(TFLM_FC)),1,0)

TFLM_CXX := $(CROSS)g++
TFLM_CC := $(CROSS)gcc
TFLM_AR := $(CROSS)ar
TFLM_DEFS := -DNDEBUG -DTF_LITE_STRIP_ERROR_STRINGS -DTF_LITE_STATIC_MEMORY $(if $(filter 1,$(TFLM_CMSIS)),-DCMSIS_NN)
TFLM_INC := $(addprefix -I$(TFLM_TP)/,tflite-micro flatbuffers/include gemmlowp ruy CMSIS_6/CMSIS/Core/Include \
  CMSIS-NN CMSIS-NN/Include)
TFLM_COMMON_FLAGS := $(TFLM_ARCH_FLAGS) -O2 -ffunction-sections -fdata-sections $(TFLM_DEFS) $(TFLM_INC)
TFLM_CXXFLAGS := $(TFLM_COMMON_FLAGS) -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics \
  -fno-unwind-tables -Wno-psabi
TFLM_CFLAGS := $(TFLM_COMMON_FLAGS) -std=c99

# The sources of a working interpreter (third_party/README.md), relative to TFLM_TP.
TFLM_M := tflite-micro/tensorflow/lite/micro
TFLM_L := tflite-micro/tensorflow/lite
TFLM_CORE_SRCS := $(filter-out %/debug_log.cc %/fake_micro_context.cc %/mock_micro_graph.cc %/test_helpers.cc \
    %/test_helper_custom_ops.cc %/recording_micro_allocator.cc,\
    $(patsubst $(TFLM_TP)/%,%,$(wildcard $(TFLM_TP)/$(TFLM_M)/*.cc))) \
  $(patsubst $(TFLM_TP)/%,%,$(wildcard $(addprefix $(TFLM_TP)/$(TFLM_M)/,arena_allocator/*.cc memory_planner/*.cc \
    tflite_bridge/*.cc) $(TFLM_TP)/$(TFLM_L)/kernels/internal/*.cc)) \
  $(TFLM_L)/kernels/kernel_util.cc $(TFLM_L)/kernels/internal/reference/portable_tensor_utils.cc \
  $(TFLM_L)/core/api/flatbuffer_conversions.cc $(TFLM_L)/core/api/tensor_utils.cc $(TFLM_L)/core/c/common.cc \
  tflite-micro/tensorflow/compiler/mlir/lite/schema/schema_utils.cc \
  tflite-micro/tensorflow/compiler/mlir/lite/core/api/error_reporter.cc \
  $(addprefix $(TFLM_M)/kernels/,kernel_util.cc micro_tensor_utils.cc conv_common.cc fully_connected_common.cc \
    l2norm.cc quantize.cc quantize_common.cc)
# CMSIS-NN's functions (not its f16/f32 ones), for the CMSIS-NN flag set only
TFLM_CMSIS_SRCS := $(if $(filter 1,$(TFLM_CMSIS)),$(filter-out %_f16.c %_f32.c,\
  $(patsubst $(TFLM_TP)/%,%,$(shell find $(TFLM_TP)/CMSIS-NN/Source -name '*.c' | LC_ALL=C sort))))
TFLM_LIB_SRCS := $(TFLM_CORE_SRCS) $(TFLM_CMSIS_SRCS)
TFLM_KERNEL_SRCS := $(TFLM_M)/kernels/$(if $(filter cmsis,$(TFLM_CONV)),cmsis_nn/)conv.cc \
  $(TFLM_M)/kernels/$(if $(filter cmsis,$(TFLM_FC)),cmsis_nn/)fully_connected.cc

# The cache key: compiler, flags and the contents of every file under third_party.
TFLM_KEY := $(shell ($(TFLM_CXX) --version | head -n 1; echo '$(TFLM_CXXFLAGS) | $(TFLM_CFLAGS) | $(TFLM_LIB_SRCS)'; \
  cd $(TFLM_TP) && find . -type f | LC_ALL=C sort | xargs sha1sum) | sha1sum | cut -c1-16)
TFLM_DIR := $(TFLM_CACHE)/$(TFLM_KEY)
TFLM_LIB := $(TFLM_DIR)/libtflm.a
TFLM_LIB_OBJS := $(addprefix $(TFLM_DIR)/obj/,$(addsuffix .o,$(basename $(TFLM_LIB_SRCS))))
TFLM_KERNEL_OBJS := $(addprefix $(TFLM_DIR)/obj/,$(addsuffix .o,$(basename $(TFLM_KERNEL_SRCS))))

$(TFLM_DIR)/obj/%.o: $(TFLM_TP)/%.cc
	@mkdir -p $(dir $@)
	$(TFLM_CXX) $(TFLM_CXXFLAGS) -c -o $@.tmp$$$$ $< && mv -f $@.tmp$$$$ $@

$(TFLM_DIR)/obj/%.o: $(TFLM_TP)/%.c
	@mkdir -p $(dir $@)
	$(TFLM_CC) $(TFLM_CFLAGS) -c -o $@.tmp$$$$ $< && mv -f $@.tmp$$$$ $@

$(TFLM_LIB): $(TFLM_LIB_OBJS)
	@echo "AR $@" && rm -f $@.tmp$$$$ && $(TFLM_AR) rcs $@.tmp$$$$ $(TFLM_LIB_OBJS) && mv -f $@.tmp$$$$ $@

# make tflm-lib: the library and both kernels' objects of this flag set, alone
tflm-lib: $(TFLM_LIB) $(TFLM_KERNEL_OBJS)
.PHONY: tflm-lib
