"""Hardware profiles: one TOML file per device, every constant with its unit, kind and source.

A profile is data, not code: `hw_profiles/<name>.toml` at the repository top level (shipped
inside the wheel as `neurodistill/hw_profiles/`), or any `.toml` file a user passes by path.
The schema (docs/hardware-profiles.md):

    name = "cmos45-fp32"               # must equal the file name without .toml
    description = "..."
    model = "compute-only"             # compute-only | synaptic-op
    convention = "..."                 # one line, copied into every price and report
    technology = "45 nm CMOS"          # optional
    notes = "..."                      # optional

    [constants.e_mac]                  # priced: one constant per count at most
    value = 4.6                        # a number >= 0
    unit = "pJ"                        # pJ | nJ | uJ | mJ | J   (per op)
    kind = "per-op"                    # per-op | all-in | estimate
    applies_to = "macs"                # the count it prices (see COUNTS_BY_MODEL)
    source = "..."                     # where the number comes from
    note = "..."                       # optional; required for kind = "estimate" (the reason)

    [reference.pilotnet_total]         # optional: recorded and shown, never priced
    ...                                # same keys; unit may also be W, kind may also be
                                       # measured-total, applies_to may also be inference | none

Rules beyond types: an `all-in` constant (static power and routing already included) must be
the only priced constant, since adding neuron or routing energies to it counts them twice;
`measured-total` figures (a whole network on one benchmark) are reference only, never per op;
a compute-only profile prices only macs/acs and a synaptic-op profile only on-chip counts.
Every violation is a `ConfigError` whose one-line message names the file, the key, the value
and what is allowed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources as ir
from pathlib import Path

from ..errors import ConfigError
from ..io.files import read_text

# unit -> power of ten that turns it into joules; W is a power, not an energy (reference only)
ENERGY_UNITS: dict[str, int] = {"pJ": -12, "nJ": -9, "uJ": -6, "mJ": -3, "J": 0}
UNITS: tuple[str, ...] = (*ENERGY_UNITS, "W")
KINDS: tuple[str, ...] = ("per-op", "all-in", "estimate", "measured-total")
PRICING_KINDS: tuple[str, ...] = ("per-op", "all-in", "estimate")
# which counts (keys of the counters' totals) each model may price
COUNTS_BY_MODEL: dict[str, tuple[str, ...]] = {
    "compute-only": ("macs", "acs"),
    "synaptic-op": ("synaptic_events", "neuron_updates", "spikes"),
}
MODELS: tuple[str, ...] = tuple(COUNTS_BY_MODEL)
COUNTS: tuple[str, ...] = ("macs", "acs", "synaptic_events", "neuron_updates", "spikes")
REFERENCE_APPLIES_TO: tuple[str, ...] = (*COUNTS, "inference", "none")

TOP_REQUIRED = ("name", "description", "model", "convention", "constants")
TOP_OPTIONAL = ("technology", "notes", "reference")
CONST_REQUIRED = ("value", "unit", "kind", "applies_to", "source")
CONST_OPTIONAL = ("note",)


@dataclass(frozen=True)
class Constant:
    """One figure of a profile: `value` in `unit`, of a `kind`, pricing the count `applies_to`."""

    key: str
    value: int | float
    unit: str
    kind: str
    applies_to: str
    source: str
    note: str = ""

    @property
    def joules(self) -> float | None:
        """The value in joules (per op for priced constants); None for a power (W).

        Exact decimal scaling, rounded once: `4.6 pJ` gives the same float as the literal
        `4.6e-12` (a float product `4.6 * 1e-12` would not always).
        """
        exp = ENERGY_UNITS.get(self.unit)
        if exp is None:
            return None
        return float(Decimal(repr(self.value)).scaleb(exp))

    def to_dict(self) -> dict:
        return {"value": self.value, "unit": self.unit, "kind": self.kind, "applies_to": self.applies_to,
                "joules": self.joules, "source": self.source, "note": self.note}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    model: str
    convention: str
    constants: tuple[Constant, ...]
    reference: tuple[Constant, ...] = ()
    technology: str = ""
    notes: str = ""
    path: str = ""

    @property
    def estimate(self) -> bool:
        """Whether any priced constant is an estimate (prices carry the label)."""
        return any(c.kind == "estimate" for c in self.constants)

    @property
    def all_in(self) -> bool:
        return any(c.kind == "all-in" for c in self.constants)

    def constant_for(self, count: str) -> Constant | None:
        """The priced constant that applies to `count`, if any."""
        return next((c for c in self.constants if c.applies_to == count), None)

    def to_dict(self) -> dict:
        """Everything, for a report's provenance block."""
        return {"name": self.name, "description": self.description, "model": self.model,
                "convention": self.convention, "technology": self.technology, "notes": self.notes,
                "path": self.path, "estimate": self.estimate,
                "constants": {c.key: c.to_dict() for c in self.constants},
                "reference": {c.key: c.to_dict() for c in self.reference}}


def profiles_dir():
    """The shipped profiles: `neurodistill/hw_profiles` in an installed wheel, else the
    repository's top-level `hw_profiles/` (source checkout, editable install)."""
    try:
        shipped = ir.files("neurodistill") / "hw_profiles"
        if shipped.is_dir():
            return shipped
    except (ModuleNotFoundError, OSError):  # pragma: no cover - the package is importable here
        pass
    return Path(__file__).resolve().parents[2] / "hw_profiles"


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    d = profiles_dir()
    if not d.is_dir():
        return []
    return sorted(f.name[: -len(".toml")] for f in d.iterdir() if f.name.endswith(".toml") and f.is_file())


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name, or the profile in a `.toml` file given by path; checked."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml"):
        path = Path(name_or_path)
        if not path.exists() and not path.is_symlink():
            raise ConfigError(f"hardware profile file {text!r} does not exist (a profile is a shipped name or a path to a .toml file)")
        return parse_profile(_read_text(path, str(path)), str(path), expect_name=path.stem)
    names = list_profiles()
    if text not in names:
        raise ConfigError(f"unknown hardware profile {text!r}; shipped: {', '.join(names) or '(none found)'}; "
                          "or give a path to a .toml file")
    f = profiles_dir() / f"{text}.toml"
    return parse_profile(_read_text(f, str(f)), str(f), expect_name=text)


def _read_text(f, where: str) -> str:
    return read_text(f, "hardware profile", ConfigError, max_bytes=2**20)


def _fail(where: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"hardware profile {where}: {key}: {msg}")


def _str_field(where: str, table: dict, key: str, label: str, required: bool = True) -> str:
    v = table.get(key, "")
    if not isinstance(v, str) or (required and not v.strip()):
        raise _fail(where, label, f"{key} = {v!r} is not allowed; allowed: a {'non-empty ' if required else ''}string")
    return " ".join(v.split())  # one line, whatever the file's layout


def _constant(where: str, section: str, key: str, entry, model: str) -> Constant:
    label = f"[{section}.{key}]"
    allowed_keys = ", ".join(CONST_REQUIRED + CONST_OPTIONAL)
    if not isinstance(entry, dict):
        raise _fail(where, label, f"is {entry!r}, not a table; a constant is a table with keys {allowed_keys}")
    missing = [k for k in CONST_REQUIRED if k not in entry]
    if missing:
        raise _fail(where, label, f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                                  f"required: {', '.join(CONST_REQUIRED)}")
    unknown = sorted(set(entry) - set(CONST_REQUIRED) - set(CONST_OPTIONAL))
    if unknown:
        raise _fail(where, f"{label} {unknown[0]}", f"unknown key {unknown[0]!r}; allowed: {allowed_keys}")
    priced = section == "constants"

    value = entry["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"{label} value", f"value = {value!r} is not a number; allowed: a number >= 0 (e.g. value = 4.6)")
    if not math.isfinite(value) or value < 0:
        raise _fail(where, f"{label} value", f"value = {value!r} is {'negative' if value < 0 else 'not finite'}; "
                                             "allowed: a finite number >= 0")

    unit = entry["unit"]
    if unit not in UNITS:
        raise _fail(where, f"{label} unit", f"unit = {unit!r} is not a known unit; allowed: {', '.join(UNITS)} "
                                            "(W under [reference] only)")
    if priced and unit not in ENERGY_UNITS:
        raise _fail(where, f"{label} unit", f"unit = {unit!r} is a power and cannot price a count; allowed here: "
                                            f"{', '.join(ENERGY_UNITS)} (put power figures under [reference])")

    kind = entry["kind"]
    if kind not in KINDS:
        raise _fail(where, f"{label} kind", f"kind = {kind!r} is not a known kind; allowed: {', '.join(KINDS)}")
    if priced and kind not in PRICING_KINDS:
        raise _fail(where, f"{label} kind", f"kind = {kind!r} is a whole-network figure and cannot price per op; "
                                            f"allowed here: {', '.join(PRICING_KINDS)} (put it under [reference])")

    applies = entry["applies_to"]
    allowed = COUNTS_BY_MODEL[model] if priced else REFERENCE_APPLIES_TO
    if applies not in allowed:
        what = f"a count a {model} profile prices" if priced and applies in REFERENCE_APPLIES_TO else "a known count"
        raise _fail(where, f"{label} applies_to", f"applies_to = {applies!r} is not {what}; allowed: {', '.join(allowed)}")

    source = _str_field(where, entry, "source", f"{label} source")
    note = _str_field(where, entry, "note", f"{label} note", required=False)
    if kind == "estimate" and not note:
        raise _fail(where, f"{label} note", "kind = 'estimate' but no note; required: a note giving the reason (what the estimate stands in for)")
    return Constant(key, value, unit, kind, applies, source, note)


def parse_profile(text: str, where: str = "<string>", expect_name: str | None = None) -> Profile:
    """Parse and check a profile's TOML text; `where` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"hardware profile {where}: not valid TOML: {' '.join(str(e).split())}") from None
    missing = [k for k in TOP_REQUIRED if k not in data]
    if missing:
        raise _fail(where, missing[0], f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                                       f"required: {', '.join(TOP_REQUIRED)}")
    unknown = sorted(set(data) - set(TOP_REQUIRED) - set(TOP_OPTIONAL))
    if unknown:
        raise _fail(where, unknown[0], f"unknown key {unknown[0]!r}; allowed: {', '.join(TOP_REQUIRED + TOP_OPTIONAL)}")
    name = _str_field(where, data, "name", "name")
    if expect_name is not None and name != expect_name:
        raise _fail(where, "name", f"name = {name!r} does not match the file name; allowed: {expect_name!r}")
    model = data["model"]
    if model not in MODELS:
        raise _fail(where, "model", f"model = {model!r} is not a known model; allowed: {', '.join(MODELS)}")
    sections = {}
    for section in ("constants", "reference"):
        table = data.get(section, {})
        if not isinstance(table, dict) or (section == "constants" and not table):
            raise _fail(where, section, f"{section} = {table!r} must be a non-empty table of "
                                        f"[{section}.NAME] entries with keys {', '.join(CONST_REQUIRED)}")
        sections[section] = tuple(_constant(where, section, k, v, model) for k, v in table.items())
    constants = sections["constants"]
    seen: dict[str, str] = {}
    for c in constants:
        if c.applies_to in seen:
            raise _fail(where, f"[constants.{c.key}] applies_to",
                        f"applies_to = {c.applies_to!r} is already priced by [constants.{seen[c.applies_to]}]; "
                        "allowed: one constant per count (two would count it twice)")
        seen[c.applies_to] = c.key
    all_in = [c for c in constants if c.kind == "all-in"]
    if all_in and len(constants) > 1:
        other = next(c for c in constants if c is not all_in[0])
        raise _fail(where, f"[constants.{other.key}]",
                    f"cannot be added to the all-in [constants.{all_in[0].key}], which already includes static, "
                    "routing and neuron energy; allowed: an all-in constant alone (move the others to [reference])")
    return Profile(name=name, description=_str_field(where, data, "description", "description"), model=model,
                   convention=_str_field(where, data, "convention", "convention"), constants=constants,
                   reference=sections["reference"],
                   technology=_str_field(where, data, "technology", "technology", required=False),
                   notes=_str_field(where, data, "notes", "notes", required=False), path=where)


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def formula(profile: Profile) -> str:
    """E = ... in the profile's own units, e.g. `E = 4.6 pJ*macs + 0.9 pJ*acs`."""
    return "E = " + " + ".join(f"{c.value} {c.unit}*{c.applies_to}" for c in profile.constants)


def list_table() -> str:
    """The shipped profiles as a text table (for `neurodistill profiles list`)."""
    rows = []
    for n in list_profiles():
        p = load_profile(n)
        kinds = sorted({c.kind for c in p.constants})
        rows.append([p.name, p.model, ", ".join(kinds), formula(p)[4:], p.description])
    return _table(["name", "model", "kind", "prices", "description"], rows)


def show_table(profile: Profile) -> str:
    """One profile as text (for `neurodistill profiles show NAME`): header, priced constants,
    reference figures (not priced), each with its source and note."""
    head = [f"name:        {profile.name}", f"description: {profile.description}", f"model:       {profile.model}"]
    if profile.technology:
        head.append(f"technology:  {profile.technology}")
    head += [f"file:        {profile.path}", f"convention:  {profile.convention}", f"formula:     {formula(profile)}"]
    if profile.estimate:
        head.append("ESTIMATE:    prices with this profile are labelled 'estimate'")
    if profile.notes:
        head.append(f"notes:       {profile.notes}")
    cols = ["", "constant", "value", "unit", "kind", "applies to", "source", "note"]
    rows = [["priced" if i == 0 else "", c.key, str(c.value), c.unit, c.kind, c.applies_to, c.source, c.note]
            for i, c in enumerate(profile.constants)]
    rows += [["reference" if i == 0 else "", c.key, str(c.value), c.unit, c.kind, c.applies_to, c.source, c.note]
             for i, c in enumerate(profile.reference)]
    return "\n".join(head) + "\n\n" + _table(cols, rows)
