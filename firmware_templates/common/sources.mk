# Sources of the portable core, for every board's Makefile: include it after setting PV_TEMPLATES (the
# firmware_templates folder). Everything here is portable C99. The one list of the core's files: the
# boards' Makefiles build from it, codegen.project copies it into emitted projects, and the tests build
# from it (make pv-print-VAR prints a variable's value, e.g. PV_KERNEL_SRCS or a board's CFLAGS).
#   link    the serial link: frames, the command handler, the A/B θ store
#   model   the θ blob parser (and its CRC-32)
#   kernel  the fixed kernel: the front, the planner and the operators (kernels/; a TFLite Micro build
#           replaces these with main/pv_tflm.cc)
PV_COMMON := $(PV_TEMPLATES)/common
PV_LINK_FILES := pv_frame.c pv_protocol.c pv_store.c pv_sign.c
PV_MODEL_FILES := pv_blob.c pv_crc32.c
PV_KERNEL_FILES := pv_kernel.c pv_plan.c \
  kernels/pv_conv_s8.c kernels/pv_pool_s8.c kernels/pv_l2norm_s8.c kernels/pv_dense_s8.c \
  kernels/pv_conv_s16.c kernels/pv_pool_s16.c kernels/pv_l2norm_s16.c kernels/pv_dense_s16.c

# The signature check (pv_sign.c) runs Monocypher's Ed25519 (sources fetched into .cache/third_party by
# codegen/third_party.py, which runs here when they are missing) and trusts the keys of the
# pv_trusted_keys.h in PV_KEYS: in these template builds the TEST key of firmware_templates/test_keys/
# (its private half is public in pvcore/test_key.py: never ship such a build). An emitted project
# carries its own pv_trusted_keys.h, made from the host's keyring (docs/signing.md).
PV_THIRD_PARTY_FILES := monocypher.c monocypher-ed25519.c
PV_MONOCYPHER ?= $(abspath $(PV_TEMPLATES)/../.cache/third_party/monocypher-3.1.2)
PV_KEYS ?= $(PV_TEMPLATES)/test_keys
ifeq ($(wildcard $(PV_MONOCYPHER)/monocypher-ed25519.c),)
  PV_FETCH_RC := $(shell python3 $(PV_TEMPLATES)/../codegen/third_party.py fetch >&2; echo $$?)
  ifneq ($(PV_FETCH_RC),0)
    $(error Monocypher is missing from $(PV_MONOCYPHER) and could not be fetched: python3 codegen/third_party.py fetch)
  endif
endif

PV_LINK_SRCS := $(addprefix $(PV_COMMON)/,$(PV_LINK_FILES)) $(addprefix $(PV_MONOCYPHER)/,$(PV_THIRD_PARTY_FILES))
PV_KERNEL_SRCS := $(addprefix $(PV_COMMON)/,$(PV_MODEL_FILES) $(PV_KERNEL_FILES))
PV_CORE_SRCS := $(PV_LINK_SRCS) $(PV_KERNEL_SRCS)
PV_CORE_DIRS := $(PV_COMMON) $(PV_COMMON)/kernels $(PV_MONOCYPHER) $(PV_KEYS)
PV_CORE_INC := $(addprefix -I,$(PV_CORE_DIRS))
PV_CORE_HDRS := $(wildcard $(addsuffix /*.h,$(PV_CORE_DIRS)))
# Makefiles that compile by file name (objects named after notdir) find the sources in every folder.
vpath %.c $(PV_CORE_DIRS)

# make pv-print-VAR: the value of VAR as this Makefile sets it (what the tests compile with).
pv-print-%:
	@echo '$($*)'
