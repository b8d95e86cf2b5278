"""SOAP 1.1 as Exchange Web Services writes it: the envelope, ServerVersionInfo, response messages, faults.

Exchange puts `ServerVersionInfo` in every answer's header (exchangelib reads the build from it), wraps each
operation's answer in `m:{Operation}Response/m:ResponseMessages/m:{Operation}ResponseMessage` with a
`ResponseClass` attribute and a `ResponseCode`, and reports request-level failures (throttling, impersonation,
missing mailboxes) as a SOAP Fault served with HTTP 500, whose `detail` carries the EWS error code in the
`errors` namespace. The shapes follow tests/fixtures/ews/EWS_SAMPLES.md (§B, §C, §M).

Uses the standard library's ElementTree: exchangelib parses whatever prefixes we choose, and the tests compare
namespaces and local names, not prefixes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
ENS = "http://schemas.microsoft.com/exchange/services/2006/errors"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"

for _prefix, _uri in (("s", SOAP), ("m", MNS), ("t", TNS), ("e", ENS), ("xsi", XSI), ("xsd", XSD)):
    ET.register_namespace(_prefix, _uri)

# An Exchange 2016 CU build. Its Version string is one exchangelib recognises as "not a request version" and
# so keeps the version the client asked for (version.py: _is_invalid_version_string).
SERVER_VERSION = {
    "MajorVersion": "15",
    "MinorVersion": "1",
    "MajorBuildNumber": "2507",
    "MinorBuildNumber": "6",
    "Version": "V2017_07_11",
}

_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?$", re.IGNORECASE
)


class EwsError(Exception):
    """A per-message error: `ResponseClass="Error"` with this code and text (and MessageXml values)."""

    def __init__(self, code: str, message: str, *, values: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.values = dict(values or {})


class SoapFault(Exception):
    """A request-level failure, answered as a SOAP Fault (HTTP 500) in Exchange's shape."""

    def __init__(self, code: str, message: str, *, values: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.values = dict(values or {})


def m(tag: str) -> str:
    return f"{{{MNS}}}{tag}"


def t(tag: str) -> str:
    return f"{{{TNS}}}{tag}"


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def text_of(elem: ET.Element | None, path: str, default: str | None = None) -> str | None:
    if elem is None:
        return default
    found = elem.find(path)
    if found is None:
        return default
    return found.text or ""


def children(elem: ET.Element | None, path: str) -> list[ET.Element]:
    """The child elements of `elem.find(path)`, or none (an Element's truth value is its child count)."""
    found = elem.find(path) if elem is not None else None
    return list(found) if found is not None else []


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


# -- dates ---------------------------------------------------------------------------------------------------


def parse_instant(text: str) -> datetime:
    """An xs:dateTime as exchangelib writes it (`...Z` or with an offset); no offset means UTC."""
    match = _DATETIME.match(text.strip())
    if match is None:
        raise EwsError("ErrorInvalidRequest", f"The value '{text}' is not a valid xs:dateTime.")
    year, month, day, hour, minute = (int(match[i]) for i in range(1, 6))
    second = int(match[6] or 0)
    micro = int((match[7] or "0")[:6].ljust(6, "0"))
    offset = match[8]
    tz: timezone = UTC
    if offset and offset.upper() != "Z":
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        value = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        raise EwsError("ErrorInvalidRequest", f"The value '{text}' is not a valid xs:dateTime.") from None
    return value.astimezone(UTC)


def parse_date(text: str) -> date:
    """An xs:date, which Exchange may write with a zone suffix (`2026-03-02-05:00`, `2026-03-02Z`)."""
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise EwsError("ErrorInvalidRequest", f"The value '{text}' is not a valid xs:date.") from None


def format_instant(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


# -- envelopes -----------------------------------------------------------------------------------------------


def envelope(body_child: ET.Element, *, with_header: bool = True) -> bytes:
    root = ET.Element(f"{{{SOAP}}}Envelope")
    if with_header:
        header = sub(root, f"{{{SOAP}}}Header")
        sub(header, t("ServerVersionInfo"), **SERVER_VERSION)
    body = sub(root, f"{{{SOAP}}}Body")
    body.append(body_child)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def operation_response(operation: str, messages: Iterable[ET.Element]) -> ET.Element:
    response = ET.Element(m(f"{operation}Response"))
    container = sub(response, m("ResponseMessages"))
    container.extend(messages)
    return response


def success(operation: str) -> ET.Element:
    message = ET.Element(m(f"{operation}ResponseMessage"), {"ResponseClass": "Success"})
    sub(message, m("ResponseCode"), "NoError")
    return message


def error_message(operation: str, error: EwsError) -> ET.Element:
    """`ResponseClass="Error"`: MessageText, ResponseCode, DescriptiveLinkKey, MessageXml (as Exchange orders them)."""
    message = ET.Element(m(f"{operation}ResponseMessage"), {"ResponseClass": "Error"})
    sub(message, m("MessageText"), error.message)
    sub(message, m("ResponseCode"), error.code)
    sub(message, m("DescriptiveLinkKey"), "0")
    if error.values:
        xml = sub(message, m("MessageXml"))
        for name, value in error.values.items():
            sub(xml, t("Value"), value, Name=name)
    return message


def fault(error: SoapFault) -> bytes:
    """Exchange's SOAP Fault (sample §M): no header, the code in faultcode and again in detail."""
    elem = ET.Element(f"{{{SOAP}}}Fault")
    # ElementTree cannot declare a prefix used only inside text, so the faultcode's `a:` is bound to the types
    # namespace through an explicit attribute, as Exchange writes it.
    code = sub(elem, "faultcode", f"a:{error.code}")
    code.set("xmlns:a", TNS)
    sub(elem, "faultstring", error.message).set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    detail = sub(elem, "detail")
    sub(detail, f"{{{ENS}}}ResponseCode", error.code)
    sub(detail, f"{{{ENS}}}Message", error.message)
    if error.values:
        xml = sub(detail, t("MessageXml"))
        for name, value in error.values.items():
            sub(xml, t("Value"), value, Name=name)
    return envelope(elem, with_header=False)


def parse_envelope(data: bytes) -> tuple[ET.Element, ET.Element]:
    """The SOAP header (possibly empty) and the operation element of a request."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SoapFault("ErrorSchemaValidation", f"The request failed schema validation: {exc}.") from None
    if root.tag != f"{{{SOAP}}}Envelope":
        raise SoapFault("ErrorSchemaValidation", "The request is not a SOAP 1.1 envelope.")
    header = root.find(f"{{{SOAP}}}Header")
    body = root.find(f"{{{SOAP}}}Body")
    if body is None or len(body) == 0:
        raise SoapFault("ErrorSchemaValidation", "The SOAP body is empty.")
    return (header if header is not None else ET.Element(f"{{{SOAP}}}Header")), body[0]
