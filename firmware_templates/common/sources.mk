# Sources of the portable core, for every board's Makefile: include it after setting PV_TEMPLATES
# (the firmware_templates folder). Everything in common/ is portable C99; the kernel may be split
# into several files, so every common/*.c is taken.
PV_COMMON := $(PV_TEMPLATES)/common
PV_LINK_SRCS := $(PV_COMMON)/pv_frame.c $(PV_COMMON)/pv_protocol.c $(PV_COMMON)/pv_store.c
PV_KERNEL_SRCS := $(filter-out $(PV_LINK_SRCS),$(wildcard $(PV_COMMON)/*.c))
PV_CORE_SRCS := $(PV_LINK_SRCS) $(PV_KERNEL_SRCS)
PV_CORE_INC := -I$(PV_COMMON)
PV_CORE_HDRS := $(wildcard $(PV_COMMON)/*.h)
