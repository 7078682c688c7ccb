"""The xArm (NURO arm kit) servo board: its USB-HID packet protocol, the calibration that maps
servo units to the URDF's joints, and a thread-safe client. No ROS; the HID library is
imported only when a real board is opened.

Packets are ``0x55 0x55 <len> <cmd> <data...>`` with ``len = len(data) + 2``; on the HID
transport a report-id byte 0 goes first. Servo positions are 0-1000 units over 240 degrees,
500 = centre. Servo ids: base 6, shoulder 5, elbow 4, wrist 3, wrist rotation 2, gripper 1.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

import yaml

VENDOR_ID = 0x0483
PRODUCT_ID = 0x5750
SIGNATURE = 0x55
SERVO_MIN_UNITS = 0
SERVO_MAX_UNITS = 1000
SERVO_CENTRE_UNITS = 500
RAD_PER_UNIT = math.radians(240.0) / 1000.0
MAX_DURATION_MS = 0xFFFF
REPORT_SIZE = 64
"""Bytes read per HID report (the board's replies fit in one)."""
DEFAULT_ARM_SERVO_IDS = (6, 5, 4, 3, 2)
"""Servo ids of base, shoulder, elbow, wrist and wrist rotation, in the URDF's arm order."""
DEFAULT_GRIPPER_SERVO_ID = 1


class Command(IntEnum):
    MOVE = 3
    POWER_OFF = 20
    POSITION_READ = 21
    OFFSET_READ = 23
    OFFSET_WRITE = 24


class XArmError(RuntimeError):
    """The board is missing, refuses access, or answered something that is not the protocol."""


# ----------------------------------------------------------------------------- packets


def packet(command: int, data: Sequence[int] = ()) -> bytes:
    """One packet (without the HID report id)."""
    if not 0 <= len(data) <= 253:
        raise ValueError(f"packet: {len(data)} data bytes, at most 253")
    return bytes([SIGNATURE, SIGNATURE, len(data) + 2, int(command), *data])


def _lo_hi(value: int) -> tuple[int, int]:
    return value & 0xFF, (value >> 8) & 0xFF


def move_packet(targets: Mapping[int, int], duration_ms: int) -> bytes:
    """MOVE: every servo in ``targets`` (id -> units) reaches its target in ``duration_ms``."""
    if not targets:
        raise ValueError("move: no servos")
    if not 0 <= duration_ms <= MAX_DURATION_MS:
        raise ValueError(f"move: duration {duration_ms} ms outside [0, {MAX_DURATION_MS}]")
    data = [len(targets), *_lo_hi(int(duration_ms))]
    for servo, units in targets.items():
        if not SERVO_MIN_UNITS <= units <= SERVO_MAX_UNITS:
            raise ValueError(f"move: servo {servo} target {units} outside "
                             f"[{SERVO_MIN_UNITS}, {SERVO_MAX_UNITS}] units")
        data += [int(servo), *_lo_hi(int(units))]
    return packet(Command.MOVE, data)


def power_off_packet(servos: Sequence[int]) -> bytes:
    return packet(Command.POWER_OFF, [len(servos), *servos])


def position_read_packet(servos: Sequence[int]) -> bytes:
    return packet(Command.POSITION_READ, [len(servos), *servos])


def parse_packet(raw: bytes | Sequence[int]) -> tuple[int, bytes]:
    """(command, data) of a packet; trailing padding of a HID report is ignored."""
    raw = bytes(raw)
    if len(raw) < 4 or raw[0] != SIGNATURE or raw[1] != SIGNATURE:
        raise XArmError(f"reply does not start with 0x55 0x55: {raw[:8].hex(' ')}")
    length = raw[2]
    if length < 2 or len(raw) < 2 + length:
        raise XArmError(f"reply length byte {length} does not fit its {len(raw)} bytes")
    return raw[3], raw[4:2 + length]


def parse_position_reply(raw: bytes | Sequence[int], servos: Sequence[int]) -> dict[int, int]:
    """Servo id -> position units from a POSITION_READ reply holding every one of ``servos``."""
    command, data = parse_packet(raw)
    if command != Command.POSITION_READ:
        raise XArmError(f"expected a position reply (command {int(Command.POSITION_READ)}), "
                        f"got command {command}")
    if not data or len(data) != 1 + 3 * data[0]:
        raise XArmError(f"position reply of {len(data)} data bytes does not hold "
                        f"{data[0] if data else '?'} servos")
    positions = {}
    for k in range(data[0]):
        servo, lo, hi = data[1 + 3 * k:4 + 3 * k]
        value = lo | (hi << 8)
        positions[servo] = value - 0x10000 if value > 0x7FFF else value
    missing = [s for s in servos if s not in positions]
    if missing:
        raise XArmError(f"servo(s) {missing} did not answer the position read")
    return positions


# ----------------------------------------------------------------------------- calibration


@dataclass
class ServoCalibration:
    """How one arm joint's angle maps to its servo's units."""

    servo_id: int
    """Bus id of the servo."""
    centre_units: float = SERVO_CENTRE_UNITS
    """Servo units at joint angle 0 (the URDF's zero)."""
    direction: int = 1
    """+1 when servo units grow with the URDF's joint angle, -1 when they shrink."""
    lower_rad: float = -2.0
    """Lowest joint angle ever commanded (rad); the calibrated limit, inside the URDF's."""
    upper_rad: float = 2.0
    """Highest joint angle ever commanded (rad)."""

    def __post_init__(self) -> None:
        if not 1 <= self.servo_id <= 253:
            raise ValueError(f"servo_id: must be in [1, 253], got {self.servo_id}")
        if self.direction not in (1, -1):
            raise ValueError(f"direction: must be 1 or -1, got {self.direction}")
        if not SERVO_MIN_UNITS <= self.centre_units <= SERVO_MAX_UNITS:
            raise ValueError(f"centre_units: must be in [0, 1000], got {self.centre_units}")
        if not (math.isfinite(self.lower_rad) and math.isfinite(self.upper_rad)
                and self.lower_rad < self.upper_rad):
            raise ValueError(f"lower_rad: must be below upper_rad {self.upper_rad}, got "
                             f"{self.lower_rad}")

    def to_units(self, angle_rad: float) -> int:
        """Servo units for an angle, first clipped to the calibrated limits."""
        angle = min(max(angle_rad, self.lower_rad), self.upper_rad)
        units = round(self.centre_units + self.direction * angle / RAD_PER_UNIT)
        return min(max(units, SERVO_MIN_UNITS), SERVO_MAX_UNITS)

    def to_rad(self, units: float) -> float:
        return self.direction * (units - self.centre_units) * RAD_PER_UNIT


@dataclass
class GripperCalibration:
    """The gripper servo: units at fully open and fully closed, mapped linearly to the finger
    joints' positions (metres)."""

    servo_id: int = DEFAULT_GRIPPER_SERVO_ID
    open_units: float = 715.0
    """Servo units with the fingers fully open."""
    closed_units: float = 260.0
    """Servo units with the fingers closed on nothing."""
    open_m: float = 0.03
    """Finger joint position when open (the URDF's / robot configuration's)."""
    closed_m: float = 0.0
    """Finger joint position when closed."""

    def __post_init__(self) -> None:
        if not 1 <= self.servo_id <= 253:
            raise ValueError(f"servo_id: must be in [1, 253], got {self.servo_id}")
        for name in ("open_units", "closed_units"):
            if not SERVO_MIN_UNITS <= getattr(self, name) <= SERVO_MAX_UNITS:
                raise ValueError(f"{name}: must be in [0, 1000], got {getattr(self, name)}")
        if self.open_units == self.closed_units or self.open_m == self.closed_m:
            raise ValueError(f"open_units: open and closed must differ (units and metres), got "
                             f"{self.open_units} / {self.closed_units} units, {self.open_m} / "
                             f"{self.closed_m} m")

    def to_units(self, position_m: float) -> int:
        lo, hi = sorted((self.closed_m, self.open_m))
        fraction = (min(max(position_m, lo), hi) - self.closed_m) / (self.open_m - self.closed_m)
        return round(self.closed_units + fraction * (self.open_units - self.closed_units))

    def to_m(self, units: float) -> float:
        fraction = (units - self.closed_units) / (self.open_units - self.closed_units)
        return self.closed_m + fraction * (self.open_m - self.closed_m)


@dataclass
class XArmCalibration:
    """Every joint of the arm and the gripper, keyed by the URDF's joint names."""

    joints: dict[str, ServoCalibration] = field(default_factory=dict)
    gripper: GripperCalibration = field(default_factory=GripperCalibration)

    def __post_init__(self) -> None:
        ids = [j.servo_id for j in self.joints.values()] + [self.gripper.servo_id]
        if len(set(ids)) != len(ids):
            raise ValueError(f"joints: servo ids repeat (with the gripper's last), got {ids}")

    def check(self, arm_joint_names: Iterable[str]) -> None:
        """ValueError unless every arm joint has a calibration."""
        missing = [n for n in arm_joint_names if n not in self.joints]
        if missing:
            raise ValueError(f"joints: missing {missing}")

    @property
    def servo_ids(self) -> list[int]:
        return [j.servo_id for j in self.joints.values()] + [self.gripper.servo_id]

    @classmethod
    def default(cls, arm_joint_names: Sequence[str],
                limits: Mapping[str, tuple[float, float]] | None = None,
                gripper_open_m: float = 0.03, gripper_closed_m: float = 0.0
                ) -> XArmCalibration:
        """Uncalibrated: servo centre at joint zero, direction +1, the URDF's limits (capped
        at the servo's +-120 degrees)."""
        if len(arm_joint_names) != len(DEFAULT_ARM_SERVO_IDS):
            raise ValueError(f"calibration: the default servo ids fit "
                             f"{len(DEFAULT_ARM_SERVO_IDS)} arm joints, not "
                             f"{len(arm_joint_names)}; write a calibration file")
        reach = SERVO_CENTRE_UNITS * RAD_PER_UNIT
        joints = {}
        for name, servo in zip(arm_joint_names, DEFAULT_ARM_SERVO_IDS):
            lo, hi = (limits or {}).get(name, (-reach, reach))
            joints[name] = ServoCalibration(servo, lower_rad=max(lo, -reach),
                                            upper_rad=min(hi, reach))
        return cls(joints, GripperCalibration(open_m=gripper_open_m,
                                              closed_m=gripper_closed_m))

    @classmethod
    def from_yaml(cls, path: str | Path, arm_joint_names: Sequence[str]) -> XArmCalibration:
        """Read and check a calibration file through the config core (a ValueError naming the
        file and the field, as for every q_grasp config)."""
        from q_grasp.config import ConfigError, load_yaml

        calibration = load_yaml(cls, path)
        try:
            calibration.check(arm_joint_names)
        except ValueError as exc:
            raise ConfigError(f"config file {str(path)!r}: {exc}") from None
        return calibration

    def to_yaml(self, path: str | Path) -> None:
        text = ("# xArm calibration for q_grasp (python -m q_grasp.hardware.calibrate)\n"
                + yaml.safe_dump({"joints": {n: asdict(j) for n, j in self.joints.items()},
                                  "gripper": asdict(self.gripper)}, sort_keys=False))
        Path(path).write_text(text)


# ----------------------------------------------------------------------------- the board


class HidDevice(Protocol):
    """What the board client needs of hidapi's ``hid.device`` (and the fake board offers)."""

    def write(self, data: bytes) -> int: ...

    def read(self, max_length: int, timeout_ms: int = 0) -> Sequence[int]: ...

    def close(self) -> None: ...


def open_hid_device(serial_number: str = "") -> Any:
    """Open the first (or the named) xArm board through hidapi (XArmError saying why not)."""
    try:
        import hid
    except ImportError:
        raise XArmError("the HID library is missing: pip install hidapi==0.15.0") from None
    found = [d for d in hid.enumerate(VENDOR_ID, PRODUCT_ID)
             if not serial_number or d.get("serial_number") == serial_number]
    if not found:
        raise XArmError(f"no xArm board (USB {VENDOR_ID:04x}:{PRODUCT_ID:04x}"
                        f"{', serial ' + serial_number if serial_number else ''}) found: is it "
                        f"plugged in and switched on?")
    info = found[0]
    device = hid.device()
    try:
        device.open_path(info["path"])
    except OSError as exc:
        path = info["path"].decode(errors="replace") if isinstance(info["path"], bytes) \
            else info["path"]
        raise XArmError(f"cannot open the xArm board at {path}: {exc} (on Linux, install the "
                        f"udev rule of docs/real_arm.md for access without root)") from None
    return device


class XArmBoard:
    """The servo board behind a HID device: MOVE, POSITION_READ, POWER_OFF. Thread-safe."""

    def __init__(self, device: HidDevice, *, read_timeout_ms: int = 200) -> None:
        self.device = device
        self.read_timeout_ms = int(read_timeout_ms)
        self._lock = threading.Lock()

    def _write(self, pkt: bytes) -> None:
        self.device.write(b"\x00" + pkt)  # report id 0 first

    def move(self, targets: Mapping[int, int], duration_s: float) -> None:
        duration_ms = min(max(round(duration_s * 1000.0), 0), MAX_DURATION_MS)
        with self._lock:
            self._write(move_packet(targets, duration_ms))

    def power_off(self, servos: Sequence[int]) -> None:
        with self._lock:
            self._write(power_off_packet(servos))

    def read_positions(self, servos: Sequence[int]) -> dict[int, int]:
        """Units of every servo (XArmError on a timeout or a malformed reply)."""
        with self._lock:
            self._write(position_read_packet(servos))
            raw = self.device.read(REPORT_SIZE, self.read_timeout_ms)
        if not raw:
            raise XArmError(f"no answer to a position read of servos {list(servos)} within "
                            f"{self.read_timeout_ms} ms")
        return parse_position_reply(raw, servos)

    def close(self) -> None:
        with self._lock:
            self.device.close()
