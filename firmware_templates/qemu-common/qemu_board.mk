# The build of a QEMU board's firmware (cortex-m-qemu/, riscv32-qemu/): the board's port, the shared
# main loop and the portable core, linked into $(BUILD)/pv_fw.elf. The board's Makefile sets what is
# its own, then includes this file:
#   PV_TEMPLATES   the firmware_templates folder
#   CROSS          the toolchain's prefix (CC, SIZE come from it)
#   ARCH_FLAGS     compiler and linker flags of the core
#   BOARD_CFLAGS   further compiler flags (libc specs, the build's -D options)
#   BOARD_LDFLAGS  further linker flags (libc specs)
#   LDSCRIPT       the linker script
#   BOARD_SRCS     its own sources, .c or .S (startup first: they are linked in this order)
#   BOARD_DEPS     further files every object depends on (may be empty)
# Every output is written under a temporary name and renamed: a board started by another process while
# this one rebuilds never sees a half-written file. The flags are a dependency (DSP=, EXTRA_CFLAGS= rebuild).
include $(PV_TEMPLATES)/common/sources.mk
PV_QEMU_COMMON := $(PV_TEMPLATES)/qemu-common

CC := $(CROSS)gcc
SIZE := $(CROSS)size
BUILD ?= build
# Two levels: the fixed kernel (PV_KERNEL_FILES: what runs per inference) for speed, everything else (the
# serial link, the θ store, the blob parser, the signature check: run once per command or θ install) for size,
# which is what fits the shared-prefix build and its A/B θ slots in 64 KiB of flash.
OPT ?= -O2
OPT_COLD ?= -Os
PV_HOT_OBJS := $(addsuffix .o,$(basename $(notdir $(PV_KERNEL_FILES))))
pv_opt = $(if $(filter $(notdir $(1)),$(PV_HOT_OBJS)),$(OPT),$(OPT_COLD))
CFLAGS := $(ARCH_FLAGS) -g -std=c99 -Wall -Wextra -Werror -ffreestanding -ffunction-sections \
  -fdata-sections $(BOARD_CFLAGS) $(PV_CORE_INC) -I$(PV_QEMU_COMMON) -I. $(EXTRA_CFLAGS)
LINK_FLAGS := $(ARCH_FLAGS) -nostartfiles $(BOARD_LDFLAGS) -Wl,--gc-sections
LDFLAGS := $(LINK_FLAGS) -T $(LDSCRIPT) -Wl,-Map=$(BUILD)/pv_fw.map
LDLIBS := -lm

SRCS := $(BOARD_SRCS) pv_qemu_main.c $(PV_CORE_SRCS)
OBJS := $(addprefix $(BUILD)/obj/,$(addsuffix .o,$(basename $(notdir $(SRCS)))))
vpath %.c . $(PV_QEMU_COMMON)
vpath %.S .

all: $(BUILD)/pv_fw.elf

$(BUILD)/obj/%.o: %.c $(PV_CORE_HDRS) board.h $(PV_QEMU_COMMON)/pv_qemu_board.h Makefile $(BUILD)/obj/flags \
  $(BOARD_DEPS) | $(BUILD)/obj
	$(CC) $(CFLAGS) $(call pv_opt,$@) -c -o $@.tmp$$$$ $< && mv -f $@.tmp$$$$ $@

$(BUILD)/obj/%.o: %.S Makefile $(BUILD)/obj/flags | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@.tmp$$$$ $< && mv -f $@.tmp$$$$ $@

$(BUILD)/obj/flags: FORCE | $(BUILD)/obj
	@echo '$(CFLAGS) $(OPT) $(OPT_COLD)' | cmp -s - $@ || echo '$(CFLAGS) $(OPT) $(OPT_COLD)' > $@

$(BUILD)/pv_fw.elf: $(OBJS) $(LDSCRIPT)
	$(CC) $(LDFLAGS) -o $@.tmp$$$$ $(OBJS) $(LDLIBS) && mv -f $@.tmp$$$$ $@
	$(SIZE) $@

$(BUILD)/obj:
	mkdir -p $@

clean:
	rm -rf $(BUILD)

.PHONY: all clean FORCE
FORCE:
