"""Build and boot the virtual boards: the Cortex-M4 firmware on QEMU mps2-an386, the RV32IMC firmware on
QEMU virt, or the host simulator.

All are context managers that yield the serial URL once the board has sent its READY frame:

    with QemuBoard() as url:                      # builds firmware_templates/cortex-m-qemu first
        with SerialLink(url) as link:
            print(link.info())

    with RiscvQemuBoard() as url:                 # builds firmware_templates/riscv32-qemu first
        ...

    with HostBoard(store=tmp / "theta.bin") as url:   # the same core as a Linux process
        ...

The serial socket is bound here (127.0.0.1, port 0) and its fd handed to the child, so there is no
port race; the child runs in its own session and its whole process group is killed on exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from host_tools.serial_link import Info, LinkError, SerialLink
from pvcore.cli import add_target_arg, fail, setup_logging
from pvcore.targets import TARGETS, VIRTUAL_FAMILIES, Target

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parents[1] / "firmware_templates"
QEMU = TARGETS["cortex-m-qemu"]
QEMU_DIR = TEMPLATES / QEMU.firmware
RISCV = TARGETS["riscv32-qemu"]
RISCV_DIR = TEMPLATES / RISCV.firmware
HOST_DIR = TEMPLATES / TARGETS["host"].firmware
TFLM_QEMU_DIR = TEMPLATES / TARGETS["cortex-m-qemu-tflm"].firmware


def make(directory: Path, *targets: str, build_dir: Path | None = None, extra_cflags: str = "") -> None:
    """Runs make in a firmware folder; raises with make's output on failure."""
    cmd = ["make", "-C", str(directory), *targets]
    if build_dir is not None:
        cmd.append(f"BUILD={build_dir}")
    if extra_cflags:
        cmd.append(f"EXTRA_CFLAGS={extra_cflags}")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")


def build_qemu_firmware(build_dir: Path | None = None, extra_cflags: str = "") -> Path:
    """Cross-compiles the mps2-an386 firmware (``extra_cflags``, e.g. ``-DPV_VIEWS=2u``); returns the ELF."""
    if shutil.which("arm-none-eabi-gcc") is None:
        raise RuntimeError(
            "arm-none-eabi-gcc not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
        )
    make(QEMU_DIR, build_dir=build_dir, extra_cflags=extra_cflags)
    return (build_dir or QEMU_DIR / "build") / "pv_fw.elf"


def tflm_make_vars() -> list[str]:
    """The make variables of a TFLM build (firmware_templates/tflm-common/tflm.mk): TFLM's sources in the
    shared folder (pvcore.paths; FACEVERIF_SHARED overrides), its compiled library in the cache."""
    from pvcore.paths import cache_dir, shared_path

    return [f"TFLM_THIRD_PARTY={shared_path('third_party')}", f"TFLM_CACHE={cache_dir('tflm')}"]


def build_tflm_firmware(model_header: Path, kernels: str = "ref", build_dir: Path | None = None, *,
                        fc: str | None = None, extra_cxxflags: str = "") -> Path:
    """Cross-compiles the TFLite Micro firmware for mps2-an386 (firmware_templates/cortex-m-qemu-tflm) around
    ``model_header`` (a <user>_model.h of codegen.emit), with TFLM's reference kernels (``kernels`` "ref")
    or CMSIS-NN's ("cmsis"); ``fc`` overrides the FULLY_CONNECTED kernel. TFLM itself is compiled once per
    flag set into the cache (two cores: -j2). Returns the ELF."""
    if shutil.which("arm-none-eabi-g++") is None:
        raise RuntimeError("arm-none-eabi-g++ not found: apt-get install gcc-arm-none-eabi "
                           "libstdc++-arm-none-eabi-newlib libstdc++-arm-none-eabi-dev")
    args = ["-j2", f"MODEL={Path(model_header).resolve()}", f"KERNELS={kernels}", *tflm_make_vars()]
    if fc is not None:
        args.append(f"TFLM_FC={fc}")
    if extra_cxxflags:
        args.append(f"EXTRA_CXXFLAGS={extra_cxxflags}")
    make(TFLM_QEMU_DIR, *args, build_dir=build_dir)
    return (build_dir or TFLM_QEMU_DIR / "build") / "pv_fw.elf"


def build_riscv_firmware(build_dir: Path | None = None, extra_cflags: str = "") -> Path:
    """Cross-compiles the RV32IMC firmware for QEMU virt (``extra_cflags``, e.g. ``-DPV_WITH_16X8=1``);
    returns the ELF."""
    if shutil.which("riscv64-unknown-elf-gcc") is None:
        raise RuntimeError(
            "riscv64-unknown-elf-gcc not found: apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"
        )
    make(RISCV_DIR, build_dir=build_dir, extra_cflags=extra_cflags)
    return (build_dir or RISCV_DIR / "build") / "pv_fw.elf"


def build_host_sim(build_dir: Path | None = None, extra_cflags: str = "") -> Path:
    """Compiles the host simulator (``extra_cflags``, e.g. ``-DPV_VIEWS=2u``); returns the executable."""
    make(HOST_DIR, build_dir=build_dir, extra_cflags=extra_cflags)
    return (build_dir or HOST_DIR / "build") / "pv_host"


def _listening_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    s.set_inheritable(True)
    return s


class _ChildBoard:
    """A board that is a child process serving its UART on a socket we bound."""

    name = "board"

    def __init__(self, *, ready_timeout: float = 60.0, log_path: Path | None = None) -> None:
        self.ready_timeout = ready_timeout
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ready: Info | None = None
        self._log: IO[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def command(self, fd: int) -> list[str]:
        raise NotImplementedError

    def start(self) -> str:
        sock = _listening_socket()
        port = sock.getsockname()[1]
        self.url = f"socket://127.0.0.1:{port}"
        if self.log_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"pv-{self.name}-")
            self.log_path = Path(self._tmp.name) / "console.log"
        self._log = open(self.log_path, "wb")
        cmd = self.command(sock.fileno())
        log.info("starting %s: %s", self.name, " ".join(cmd))
        try:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
        finally:
            sock.close()  # the child holds its own copy
        try:
            self.ready = self._wait_ready()
        except (LinkError, OSError) as e:
            out = self.console()
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready: {e}\n{out}") from e
        log.info("%s ready on %s: %s", self.name, self.url, self.ready)
        return self.url

    def _wait_ready(self) -> Info:
        """READY (or an INFO answer) within ready_timeout. Waits in slices: a child that died is reported
        at once, and a connection that went wrong is replaced by a fresh one (the board sends READY on
        every new connection, QEMU's server socket accepts the next one)."""
        deadline = time.monotonic() + self.ready_timeout
        last: Exception | None = None
        while (left := deadline - time.monotonic()) > 0:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise LinkError(f"{self.name} exited (code {code}) before it was ready")
            try:
                with SerialLink(self.url) as link:
                    return link.wait_ready(min(left, 10.0))
            except (LinkError, OSError) as e:  # LinkLost included: connect again
                last = e
                log.info("%s not ready yet (%s); trying a new connection", self.name, e)
                time.sleep(0.2)
        raise LinkError(f"no READY within {self.ready_timeout:.0f} s (last: {last})")

    def console(self) -> str:
        """What the child printed (QEMU's or the simulator's stdout/stderr)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 10.0) -> int | None:
        """Waits for the child to exit on its own; returns its exit code (None if still running)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QemuBoard(_ChildBoard):
    """A QEMU family's firmware on its emulated board, booted as ``target.qemu`` says (the emulator, the
    machine and its options: pvcore.targets), by default with -icount shift=0: one guest instruction takes
    1 ns of virtual time, so the board's ticks count instructions. ``bulk``: raw images preloaded where the
    firmware reads INFER_BULK's. ``elf``: None builds the template's firmware (``build=False``: the last
    build's)."""

    target: Target

    def __init__(
        self,
        elf: Path | None = None,
        *,
        bulk: Path | None = None,
        icount: bool = True,
        build: bool = True,
        **kw: object,
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        boot = self.target.qemu
        if boot is None:
            raise ValueError(f"target {self.target.name} has no QEMU record (pvcore.targets)")
        self.boot = boot
        if shutil.which(boot.system) is None:
            raise RuntimeError(f"{boot.system} not found: apt-get install {boot.package}")
        if elf is None:
            elf = self.build_firmware() if build else TEMPLATES / self.target.firmware / "build" / "pv_fw.elf"
        self.elf = elf
        self.bulk = bulk
        self.icount = icount
        if bulk is not None and bulk.stat().st_size > boot.bulk_bytes:
            raise ValueError(f"{bulk}: {bulk.stat().st_size} bytes do not fit the board's "
                             f"{boot.bulk_bytes >> 20} MiB of bulk memory")

    def build_firmware(self) -> Path:
        raise NotImplementedError

    def command(self, fd: int) -> list[str]:
        boot = self.boot
        cmd = [
            boot.system, "-M", boot.machine, *boot.options, "-display", "none", "-monitor", "none", "-nodefaults",
            "-kernel", str(self.elf),
            "-chardev", f"socket,id=ser0,fd={fd},server=on,wait=on,nodelay=on", "-serial", "chardev:ser0",
        ]  # fmt: skip
        if self.icount:
            cmd += ["-icount", "shift=0"]
        if self.bulk is not None:
            cmd += ["-device", f"loader,file={self.bulk},addr=0x{boot.bulk_base:08x},force-raw=on"]
        return cmd


class QemuBoard(_QemuBoard):
    """The Cortex-M4 firmware on QEMU mps2-an386 (bulk images in its PSRAM)."""

    name = "qemu-mps2-an386"
    target = QEMU

    def build_firmware(self) -> Path:
        return build_qemu_firmware()


class TflmQemuBoard(_QemuBoard):
    """TensorFlow Lite Micro on QEMU mps2-an386 (firmware_templates/cortex-m-qemu-tflm): the Cortex-M4 board,
    with a firmware built around one user's .tflite — by build_tflm_firmware or an emitted project — so
    ``elf`` is needed."""

    name = "qemu-mps2-an386-tflm"
    target = TARGETS["cortex-m-qemu-tflm"]

    def build_firmware(self) -> Path:
        raise RuntimeError("the TFLM firmware is built around a user's model: build_tflm_firmware(MODEL_H) or an "
                           "emitted cortex-m-qemu-tflm project (python -m host_tools.flash --build DIR)")


class RiscvQemuBoard(_QemuBoard):
    """The RV32IMC firmware on QEMU virt (machine mode, -bios none): its minstret ticks (INFO tick_hz 10⁹)
    are instructions under -icount."""

    name = "qemu-riscv32-virt"
    target = RISCV

    def build_firmware(self) -> Path:
        return build_riscv_firmware()


class HostBoard(_ChildBoard):
    """The same core as a Linux process (firmware_templates/host), θ store in a file."""

    name = "host-sim"

    def __init__(
        self,
        store: Path | None = None,
        *,
        exe: Path | None = None,
        bulk: Path | None = None,
        build: bool = True,
        **kw: object,
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.exe = exe if exe is not None else (build_host_sim() if build else HOST_DIR / "build" / "pv_host")
        self.store = store
        self.bulk = bulk

    def start(self) -> str:
        if self.store is None:
            self._store_tmp = tempfile.TemporaryDirectory(prefix="pv-host-store-")
            self.store = Path(self._store_tmp.name) / "theta_store.bin"
        return super().start()

    def stop(self) -> None:
        super().stop()
        tmp = getattr(self, "_store_tmp", None)
        if tmp is not None:
            tmp.cleanup()
            self._store_tmp = None
            self.store = None

    def command(self, fd: int) -> list[str]:
        cmd = [str(self.exe), "--fd", str(fd), "--store", str(self.store)]
        if self.bulk is not None:
            cmd += ["--bulk", str(self.bulk)]
        return cmd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.qemu",
        description="Build and boot a virtual board (QEMU mps2-an386, QEMU virt RV32IMC or the host simulator); "
        "print its URL and serve until Ctrl-C.",
    )
    add_target_arg(ap, families=VIRTUAL_FAMILIES, default="cortex-m-qemu",
                   help="the virtual board (default cortex-m-qemu)")
    ap.add_argument("--bulk", type=Path, help="raw int8 images (112*112*3 each) preloaded for INFER_BULK")
    ap.add_argument("--store", type=Path, help="host simulator: θ store file")
    ap.add_argument(
        "--no-icount", action="store_true", help="QEMU: run without -icount (faster, no exact ticks)"
    )
    args = ap.parse_args(argv)
    setup_logging()
    try:
        board: _ChildBoard
        if args.target == "cortex-m-qemu-tflm":
            raise ValueError("cortex-m-qemu-tflm runs a user's .tflite: emit its project (codegen.emit --target "
                             "cortex-m-qemu-tflm) and boot it with python -m host_tools.flash --target "
                             "cortex-m-qemu-tflm --build DIR")
        if args.target == "cortex-m-qemu":
            board = QemuBoard(bulk=args.bulk, icount=not args.no_icount)
        elif args.target == "riscv32-qemu":
            board = RiscvQemuBoard(bulk=args.bulk, icount=not args.no_icount)
        else:
            board = HostBoard(args.store, bulk=args.bulk)
        with board as url:
            print(url, flush=True)
            while board.proc is not None and board.proc.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, ValueError, OSError) as e:
        fail(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
