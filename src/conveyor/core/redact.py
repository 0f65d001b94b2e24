"""Keeping credentials out of what Conveyor writes down: audit payloads, logs, errors, reports.

Two shapes carry a secret in practice, and both are recognisable without knowing the caller:

* a URL with a password in it (``postgresql://app:s3cret@db/conveyor``) or a credential in its
  query (``...?token=...``, a presigned ``X-Amz-Signature=...``): the password or value is
  replaced by ``***`` and the rest of the URL, which says *where*, is kept;
* a mapping key that names a secret (``password``, ``token``, ``api_key``,
  ``aws_secret_access_key``...): its whole value is replaced. A key that only *refers* to a
  secret, such as ``token_id`` or ``token_hash``, is kept: identifiers and hashes are safe to show
  and are what an audit trail needs.

Redaction runs on every audit payload inside the write transaction, so it is built to cost
nothing on the usual payload (short identifiers and numbers): a string is parsed only if it
contains ``://`` and an ``@`` or ``=``, and containers are rebuilt only when something in them
changed (~0.7 us for a typical three-key payload).
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "RedactingFilter",
    "install_log_redaction",
    "is_secret_key",
    "redact",
    "redact_message",
    "redact_text",
    "redact_url",
]

MASK = "***"

# Matched against the end of a key: "token" and "auth_token" name secrets, "token_id" does not.
_SECRET_KEY = re.compile(
    r"(?:password|passwd|pwd|passphrase|secret|token|credentials?|authorization|cookie"
    r"|api[_-]?key|access[_-]?key|private[_-]?key|signature|sig)$",
    re.IGNORECASE,
)
# A URL anywhere in a longer text: scheme, "://", then anything up to whitespace or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


@functools.lru_cache(maxsize=1024)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key or query parameter named ``key`` holds a secret.

    Cached: payload keys are a small, fixed vocabulary, and the regex cost ~0.5 us a key.
    """
    return _SECRET_KEY.search(key) is not None or key.lower().startswith("x-amz-credential")


def redact_url(url: str) -> str:
    """``url`` with its password and any secret query values replaced by ``***``.

    Anything that does not parse as a URL is returned unchanged.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostinfo}"
    query = parts.query
    if query and "=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_key(k) else v) for k, v in pairs], safe="*/:")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (see :func:`redact_url`)."""
    # Without "@" there is no password, without "=" no query value: most URLs stop here.
    if "://" not in text or ("@" not in text and "=" not in text):
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, strings, numbers) with secrets masked.

    Mapping values under a secret-naming key (:func:`is_secret_key`) become ``***`` whatever
    they are (``None`` and empty strings stay, since they reveal nothing); URLs in strings lose
    their passwords and secret query values. ``value`` itself is never modified, and is returned
    as is when nothing in it needed masking.
    """
    if isinstance(value, str):
        return redact_text(value) if "://" in value else value
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            if type(v) is str:  # the usual case, inlined: no call unless it holds a URL
                new = v if "://" not in v else redact_text(v)
            elif v is None or type(v) in (int, float, bool):
                new = v
            else:
                new = redact(v)
            if isinstance(k, str) and new is not None and new != "" and is_secret_key(k):
                new = MASK
            if new is not v and out is None:
                out = dict(value)
            if out is not None:
                out[k] = new
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items = [redact(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items) if isinstance(value, tuple) else items
    return value


# A Conveyor API token anywhere in a text (see conveyor.access): always masked.
_TOKEN_IN_TEXT = re.compile(r"cvr_[A-Za-z0-9_-]{20,}")


def redact_message(text: str) -> str:
    """A log line or error message with URL credentials and API tokens masked."""
    if "cvr_" in text:
        text = _TOKEN_IN_TEXT.sub("cvr_" + MASK, text)
    return redact_text(text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks credentials in every record's final message.

    Installed on the handlers of the CLI and the server, so no log line carries a store
    password or an API token, whoever logged it (including libraries).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_message(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Add :class:`RedactingFilter` to every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
