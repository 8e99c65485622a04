# Sources of the portable core, for every board's Makefile: include it after setting PV_TEMPLATES (the
# firmware_templates folder). Everything here is portable C99. The one list of the core's files: the
# boards' Makefiles build from it, codegen.project copies it into emitted projects, and the tests build
# from it (make pv-print-VAR prints a variable's value, e.g. PV_KERNEL_SRCS or a board's CFLAGS).
#   link    the serial link: frames, the command handler, the A/B θ store
#   model   the θ blob parser (and its CRC-32)
#   kernel  the fixed kernel: the front, the planner and the operators (kernels/; a TFLite Micro build
#           replaces these with main/pv_tflm.cc)
PV_COMMON := $(PV_TEMPLATES)/common
PV_LINK_FILES := pv_frame.c pv_protocol.c pv_store.c
PV_MODEL_FILES := pv_blob.c pv_crc32.c
PV_KERNEL_FILES := pv_kernel.c pv_plan.c \
  kernels/pv_conv_s8.c kernels/pv_pool_s8.c kernels/pv_dense_s8.c \
  kernels/pv_conv_s16.c kernels/pv_pool_s16.c kernels/pv_dense_s16.c

PV_LINK_SRCS := $(addprefix $(PV_COMMON)/,$(PV_LINK_FILES))
PV_KERNEL_SRCS := $(addprefix $(PV_COMMON)/,$(PV_MODEL_FILES) $(PV_KERNEL_FILES))
PV_CORE_SRCS := $(PV_LINK_SRCS) $(PV_KERNEL_SRCS)
PV_CORE_DIRS := $(PV_COMMON) $(PV_COMMON)/kernels
PV_CORE_INC := $(addprefix -I,$(PV_CORE_DIRS))
PV_CORE_HDRS := $(wildcard $(addsuffix /*.h,$(PV_CORE_DIRS)))
# Makefiles that compile by file name (objects named after notdir) find the sources in every folder.
vpath %.c $(PV_CORE_DIRS)

# make pv-print-VAR: the value of VAR as this Makefile sets it (what the tests compile with).
pv-print-%:
	@echo '$($*)'
