"""Ephemeral auth tokens: the request, the grant it yields, and the limits it puts on a session.

`client.auth_tokens.create(config=...)` posts `{base}/v1alpha/auth_tokens` with a body such as

    {"expireTime": "…+00:00", "newSessionExpireTime": "…", "uses": 1,
     "bidiGenerateContentSetup": {"model": "models/…", "generationConfig": {…}, "sessionResumption": {}},
     "fieldMask": "model,generationConfig.temperature,sessionResumption"}

and gets back `{"name": "auth_tokens/…", "expireTime": …, "newSessionExpireTime": …, "uses": …}`. The
client then opens `…BidiGenerateContentConstrained` with the token name as its key. Everything here is
pure: the caller passes the clock, stores the record and counts the uses.

The constraint (`bidiGenerateContentSetup`) is the base setup of every session opened with the token;
the locked part of it cannot be changed by the client:

* no `fieldMask`: the whole constraint is locked, every setup field included (a field the constraint
  leaves out is locked to "absent"), except `model` when the constraint names none;
* a `fieldMask`: only those paths are locked (a path is a setup field, or a field one level inside one);
* `sessionResumption.handle` is never locked: resuming a session is always allowed.

A locked field the client leaves out takes the constraint's value, as do unlocked ones. A locked field
the client sets to something else ends the session with 1007. For a locked object, the client may
leave keys out; every key it does send must carry the constraint's value.
"""

from __future__ import annotations

import copy
import datetime as _dt
import re
import secrets
import types as _types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..protocol.codec import _describe
from ..protocol.errors import CloseCode, ProtocolError, invalid_argument
from ..protocol.messages import Setup

DEFAULT_EXPIRE_S = 30 * 60
DEFAULT_NEW_SESSION_EXPIRE_S = 60
MAX_AHEAD_S = 20 * 60 * 60
MAX_USES = 2**31 - 1  # an int32 on the wire
REST_MESSAGE_BYTES = 4096  # a REST error message has no close frame's 123-byte limit
TOKEN_PREFIX = "auth_tokens/"

_PLACEHOLDER_MODEL = "models/openlive-ephemeral-placeholder"

# Body keys: the camelCase name and its snake_case twin, both accepted (protobuf-JSON rules).
_BODY_KEYS = {
    "expireTime": "expire_time",
    "newSessionExpireTime": "new_session_expire_time",
    "uses": "uses",
    "bidiGenerateContentSetup": "bidi_generate_content_setup",
    "fieldMask": "field_mask",
}

# Keys whose values are user data (schemas, arguments, labels): their inner keys are never re-cased.
_USER_DATA_KEYS = frozenset({
    "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "responseSchema", "args", "labels",
})


class TokenRequestError(ValueError):
    """A token request the service refuses: the message fits a REST 400 INVALID_ARGUMENT body."""


# ---------------------------------------------------------------------------------------------
# Small helpers


def _camel(name: str) -> str:
    """snake_case → lowerCamelCase; a name already in camelCase is kept as it is."""
    return re.sub(r"_([a-zA-Z0-9])", lambda m: m.group(1).upper(), name)


def _model_id(model: Any) -> Any:
    return model[len("models/"):] if isinstance(model, str) and model.startswith("models/") else model


def _dump(setup: Setup) -> dict[str, Any]:
    """A setup as JSON-ready data: camelCase for modelled fields, loose dicts as the client sent them.

    Bytes (inline data) come out as standard base64: the wire models serialize them so.
    """
    return setup.model_dump(by_alias=True, exclude_none=True, mode="json")


def _norm(value: Any, key: str | None = None) -> Any:
    """The comparison form: keys camelCased at every level except inside user data."""
    if isinstance(value, dict):
        if key in _USER_DATA_KEYS:
            return value
        return {_camel(k): _norm(v, _camel(k)) for k, v in value.items()}
    if isinstance(value, list):
        return value if key in _USER_DATA_KEYS else [_norm(v) for v in value]
    return value


def _sub_key(top: str, key: str) -> str:
    return key if top in _USER_DATA_KEYS else _camel(key)


def _view(raw: dict[str, Any]) -> dict[str, Any]:
    """A dumped setup in comparison form: model ids without "models/", no resumption handle.

    A sessionResumption that carries only a handle is a request to resume, not a setting: it counts
    as unset.
    """
    view = _norm(raw)
    if "model" in view:
        view["model"] = _model_id(view["model"])
    resumption = view.get("sessionResumption")
    if isinstance(resumption, dict) and "handle" in resumption:
        resumption = {k: v for k, v in resumption.items() if k != "handle"}
        if resumption:
            view["sessionResumption"] = resumption
        else:
            del view["sessionResumption"]
    return view


def _parse_time(value: Any, key: str) -> float:
    """An RFC 3339 time (fractional seconds optional, "Z" or an offset required) → unix seconds."""
    if not isinstance(value, str):
        raise TokenRequestError(f"Invalid value at '{key}' (type.googleapis.com/google.protobuf.Timestamp), "
                                f"expected an RFC 3339 string.")
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
                     value.strip())
    if not m:
        raise TokenRequestError(f"Invalid value at '{key}' (type.googleapis.com/google.protobuf.Timestamp), "
                                f"{value[:40]!r}: expected RFC 3339 with a time zone, e.g. 2025-01-01T12:00:00Z.")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = _dt.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise TokenRequestError(f"Invalid value at '{key}': bad time zone offset {zone!r}.")
        tz = _dt.timezone(sign * _dt.timedelta(hours=hours, minutes=minutes))
    try:
        whole = _dt.datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()
    except (ValueError, OverflowError):
        raise TokenRequestError(f"Invalid value at '{key}', {value[:40]!r}: not a valid date and time.") from None
    return whole + (float(m.group(7)) if m.group(7) else 0.0)


def format_time(t: float) -> str:
    """Unix seconds → RFC 3339 in UTC with "Z", fractional seconds only where there are some."""
    dt = _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        frac = f"{dt.microsecond:06d}"
        text += "." + (frac[:3] if frac.endswith("000") else frac)
    return text + "Z"


def _parse_uses(value: Any) -> int:
    if isinstance(value, bool):
        raise TokenRequestError(f"Invalid value at 'uses' (TYPE_INT32), {str(value).lower()}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        value = int(value)  # protobuf JSON also accepts integers as strings
    if not isinstance(value, int):
        raise TokenRequestError(f"Invalid value at 'uses' (TYPE_INT32), {str(value)[:40]!r}")
    if value < 0:
        raise TokenRequestError("uses must not be negative (0 means unlimited).")
    if value > MAX_USES:
        raise TokenRequestError(f"uses must be at most {MAX_USES} (0 means unlimited).")
    return value


# ---------------------------------------------------------------------------------------------
# The constraint and its field mask


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation such as `GenerationConfig | None` holds, if it is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, _types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _is_loose_dict(annotation: Any) -> bool:
    """`dict[...] | None` or `Any`: a field whose inner keys we do not model."""
    if annotation is Any:
        return True
    if typing.get_origin(annotation) in (typing.Union, _types.UnionType):
        return any(_is_loose_dict(a) for a in typing.get_args(annotation) if a is not type(None))
    return annotation is dict or typing.get_origin(annotation) is dict


def _aliases(model: type[BaseModel]) -> dict[str, Any]:
    return {_camel(name): info.annotation for name, info in model.model_fields.items()}


_SETUP_FIELDS = _aliases(Setup)


def _parse_field_mask(value: Any, *, check_paths: bool = True) -> list[str]:
    """A protobuf-JSON FieldMask ("a,b.c", or a list of paths) → unique camelCase paths, in order."""
    if isinstance(value, str):
        raw = value.split(",")
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        raw = [part for p in value for part in p.split(",")]
    else:
        raise TokenRequestError("Invalid value at 'field_mask' (type.googleapis.com/google.protobuf.FieldMask), "
                                "expected a comma-separated string of paths.")
    paths: list[str] = []
    for item in raw:
        item = item.strip()
        if not item:
            continue
        segments = [_camel(s.strip()) for s in item.split(".")]
        if not check_paths:
            continue
        if len(segments) > 2 or not all(segments):
            raise TokenRequestError(f"Invalid field mask path {item!r}: a path is a setup field or a field "
                                    "directly inside one, e.g. generationConfig.temperature.")
        top = segments[0]
        if top not in _SETUP_FIELDS:
            raise TokenRequestError(f"Invalid field mask path {item!r}: {top!r} is not a field of "
                                    "BidiGenerateContentSetup.")
        if len(segments) == 2:
            annotation = _SETUP_FIELDS[top]
            nested = _unwrap_model(annotation)
            if nested is not None:
                if segments[1] not in _aliases(nested):
                    raise TokenRequestError(f"Invalid field mask path {item!r}: {segments[1]!r} is not a field of "
                                            f"{top}.")
            elif not _is_loose_dict(annotation):
                raise TokenRequestError(f"Invalid field mask path {item!r}: {top} has no fields to select.")
        path = ".".join(segments)
        if path not in paths:
            paths.append(path)
    return paths


def _parse_constraint(value: Any) -> dict[str, Any] | None:
    """Validate a constraint as a Live API setup (its model may be absent) → its dumped form."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TokenRequestError("Invalid value at 'bidi_generate_content_setup', expected an object.")
    if not value:
        return None  # the SDK never sends an empty one; it means no constraint, as when it is left out
    has_model = "model" in value and value["model"] is not None
    candidate = dict(value) if has_model else {**value, "model": _PLACEHOLDER_MODEL}
    try:
        setup = Setup.model_validate(candidate)
    except ValidationError as exc:
        error = dict(exc.errors(include_url=False)[0])
        error["loc"] = ("bidi_generate_content_setup", *error["loc"])
        raise TokenRequestError(_describe(error, limit=REST_MESSAGE_BYTES)) from None
    if has_model and not setup.model.strip():
        raise TokenRequestError("bidi_generate_content_setup.model must not be empty.")
    dumped = _dump(setup)
    if not has_model:
        del dumped["model"]
    resumption = dumped.get("sessionResumption")
    if isinstance(resumption, dict) and "handle" in resumption:
        raise TokenRequestError("bidi_generate_content_setup.session_resumption.handle cannot be part of a "
                                "token: resuming is always left to the client.")
    return dumped


# ---------------------------------------------------------------------------------------------
# The grant


@dataclass
class TokenGrant:
    """What a minted token allows. Times are unix seconds; `uses` 0 means unlimited.

    `constraint` is the setup every session starts from (dumped setup: camelCase for modelled fields,
    bytes as base64, no "model" key when the token names no model), None for none.
    `field_mask` is the list of locked camelCase paths; None means the whole constraint is locked.
    """

    expire_at: float
    new_session_expire_at: float
    uses: int = 1
    constraint: dict[str, Any] | None = None
    field_mask: list[str] | None = None

    @classmethod
    def from_request(cls, body: dict[str, Any], now: float) -> TokenGrant:
        """Validate a `POST …/auth_tokens` body (camelCase or snake_case keys) at time `now`."""
        if not isinstance(body, dict):
            raise TokenRequestError("Invalid JSON payload received. Expected an object.")
        known = {**{c: c for c in _BODY_KEYS}, **{s: c for c, s in _BODY_KEYS.items()}}
        fields: dict[str, Any] = {}
        for key, value in body.items():
            if key not in known:
                raise TokenRequestError(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
            name = known[key]
            if name in fields:
                raise TokenRequestError(f'Invalid JSON payload received. Field "{name}" is given twice.')
            fields[name] = value

        def when(key: str, default_s: float) -> float:
            value = fields.get(key)
            if value is None:
                return now + default_s
            snake = _BODY_KEYS[key]
            t = _parse_time(value, snake)
            if t <= now:
                raise TokenRequestError(f"{snake} must be in the future.")
            if t - now >= MAX_AHEAD_S:
                raise TokenRequestError(f"{snake} must be less than 20 hours in the future.")
            return t

        expire_at = when("expireTime", DEFAULT_EXPIRE_S)
        new_session_expire_at = when("newSessionExpireTime", DEFAULT_NEW_SESSION_EXPIRE_S)
        uses = 1 if fields.get("uses") is None else _parse_uses(fields["uses"])
        constraint = _parse_constraint(fields.get("bidiGenerateContentSetup"))
        mask_value = fields.get("fieldMask")
        # Without a constraint there is nothing to lock and the mask is ignored (the SDK sends
        # lock_additional_fields as they are then, e.g. "temperature").
        field_mask = None if mask_value is None else _parse_field_mask(mask_value, check_paths=constraint is not None)
        if constraint is None or not field_mask:
            # An empty mask reads as no mask (proto3 JSON's default): the safer reading, all locked.
            field_mask = None
        return cls(expire_at=expire_at, new_session_expire_at=new_session_expire_at, uses=uses,
                   constraint=constraint, field_mask=field_mask)

    def to_record(self) -> dict[str, Any]:
        """JSON-serializable form for storage."""
        return {
            "expire_at": self.expire_at,
            "new_session_expire_at": self.new_session_expire_at,
            "uses": self.uses,
            "constraint": copy.deepcopy(self.constraint),
            "field_mask": list(self.field_mask) if self.field_mask is not None else None,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TokenGrant:
        """Inverse of `to_record`; ValueError on a record it did not write."""
        try:
            expire_at = float(record["expire_at"])
            new_session_expire_at = float(record["new_session_expire_at"])
            uses = record["uses"]
            constraint = record.get("constraint")
            field_mask = record.get("field_mask")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an ephemeral token record: {exc}") from None
        if isinstance(uses, bool) or not isinstance(uses, int) or uses < 0:
            raise ValueError("not an ephemeral token record: bad uses")
        if constraint is not None and not isinstance(constraint, dict):
            raise ValueError("not an ephemeral token record: bad constraint")
        if field_mask is not None and not (isinstance(field_mask, list)
                                           and all(isinstance(p, str) for p in field_mask)):
            raise ValueError("not an ephemeral token record: bad field_mask")
        return cls(expire_at=expire_at, new_session_expire_at=new_session_expire_at, uses=uses,
                   constraint=copy.deepcopy(constraint),
                   field_mask=list(field_mask) if field_mask is not None else None)

    def response(self, name: str) -> dict[str, Any]:
        """The REST reply body, as `google.genai.types.AuthToken` reads it."""
        return {
            "name": name,
            "expireTime": format_time(self.expire_at),
            "newSessionExpireTime": format_time(self.new_session_expire_at),
            "uses": self.uses,
        }


def mint_token_name() -> str:
    """A fresh token name; the name is the secret (256 random bits, URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_usable(grant: TokenGrant, now: float, *, resuming: bool) -> None:
    """Refuse (1008) a token past its expiry, or a new session past newSessionExpireTime.

    Resuming a session is not a new session. Counting uses is the caller's job (resumes are free).
    """
    if now >= grant.expire_at:
        raise ProtocolError(CloseCode.POLICY, "The ephemeral token has expired.")
    if not resuming and now >= grant.new_session_expire_at:
        raise ProtocolError(CloseCode.POLICY,
                            "The ephemeral token no longer accepts new sessions (newSessionExpireTime has passed).")


# ---------------------------------------------------------------------------------------------
# Applying a constraint to a session's setup

_MISSING = object()


def _locked(path: str) -> ProtocolError:
    return invalid_argument(f"Request contains an invalid argument: {path} is locked by the ephemeral token.")


def _check_locked(path: tuple[str, ...], client: dict[str, Any], constraint: dict[str, Any]) -> None:
    top = path[0]
    mine = client.get(top, _MISSING)
    theirs = constraint.get(top, _MISSING)
    if mine is _MISSING:
        return  # left out: the constraint's value is used
    if len(path) == 1:
        if isinstance(mine, dict) and isinstance(theirs, dict):
            # A locked object: every key the client sends must carry the constraint's value.
            for key, value in mine.items():
                if theirs.get(key, _MISSING) != value:
                    raise _locked(f"{top}.{key}")
        elif mine != theirs:
            raise _locked(top)
        return
    sub = path[1]
    if not isinstance(mine, dict) or sub not in mine:
        return
    theirs_sub = theirs.get(sub, _MISSING) if isinstance(theirs, dict) else _MISSING
    if mine[sub] != theirs_sub:
        raise _locked(f"{top}.{sub}")


def apply_constraints(setup: Setup, grant: TokenGrant) -> Setup:
    """The setup of a session opened with this token; 1007 when the client changes a locked field."""
    if grant.constraint is None:
        return setup
    client_raw = _dump(setup)
    constraint_raw = grant.constraint
    client = _view(client_raw)
    constraint = _view(constraint_raw)

    if grant.field_mask is None:
        paths = [(k,) for k in dict.fromkeys([*client, *constraint])]
    else:
        paths = [tuple(p.split(".")) for p in grant.field_mask]
    for path in paths:
        if path[0] == "model" and "model" not in constraint:
            continue  # the token names no model: the client picks it
        if path == ("sessionResumption", "handle"):
            continue  # resuming is always allowed
        _check_locked(path, client, constraint)

    # The constraint is the base; what the client set wins (locked values were checked equal above).
    merged = copy.deepcopy(client_raw)
    for top, value in constraint_raw.items():
        if top == "model":
            continue  # the client always names one, equal to the token's when that is locked
        if top not in client:
            base = copy.deepcopy(value)
            if top == "sessionResumption" and isinstance(merged.get(top), dict) and "handle" in merged[top]:
                base = {**base, "handle": merged[top]["handle"]}
            merged[top] = base
        elif isinstance(merged.get(top), dict) and isinstance(value, dict):
            have = {_sub_key(top, k) for k in merged[top]}
            for key, sub_value in value.items():
                if _sub_key(top, key) not in have:
                    merged[top][key] = copy.deepcopy(sub_value)
    try:
        return Setup.model_validate(merged)
    except ValidationError as exc:  # both halves were valid; a mix of casings could still clash
        raise invalid_argument(_describe(exc.errors(include_url=False)[0])) from None
