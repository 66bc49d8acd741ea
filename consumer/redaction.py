"""Keeping secrets out of text: every form of a secret, and the user-info of URLs.

A server, a proxy or a library may echo a secret back in another form than the one configured:
URL-encoded in a query string or an error body, base64 in a Basic ``Authorization`` header, JSON-
escaped in a log line. :func:`secret_forms` lists those forms for each secret and is the one place
that computes them; it is cached, so sinks and writers pay for it once at start-up, never per log
line or per error.

URLs are shown as ``scheme://user:****@host...``. Everything between ``scheme://`` and the *last*
``@`` that follows it is treated as user-info: a password holding an unencoded ``/`` (which breaks
URL parsing) is masked whole rather than printed as a "path".
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final
from urllib.parse import quote, quote_plus

import orjson

MASK: Final = "**********"
# A secret shorter than this is masked in free text only as a whole token (not inside a longer word).
# A real API key or password is far longer; a 1-3 character "secret" (a test key, a header value
# such as "1") would otherwise blank every word containing it ("k" in "Kafka") and make the logs
# unreadable, while the secret standing alone (``'kp'``, ``=kp&``) is still masked.
SHORT_SECRET_CHARS: Final = 6
URL_PASSWORD_MASK: Final = "****"  # noqa: S105 - the mask, not a password

# A scheme, then everything up to the next white space, quote or the next scheme (a list of URLs
# in one value, e.g. ``mqtt://a:b@h1,mqtt://c:d@h2``, is masked URL by URL).
_URL: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)((?:(?![A-Za-z][A-Za-z0-9+.\-]*://)[^\s\"'<>])*)")


def mask_url_credentials(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``****`` (``user:****@host``).

    A user-info without a password (``https://token@host``) is masked whole: it is often a token.
    """
    if "@" not in text:
        return text
    return _URL.sub(_mask_one, text)


def _mask_one(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    at = rest.rfind("@")
    if at < 0:
        return match.group(0)
    user, colon, _ = rest[:at].partition(":")
    userinfo = f"{user}:{URL_PASSWORD_MASK}" if colon else URL_PASSWORD_MASK
    return f"{scheme}{userinfo}{rest[at:]}"


def url_password(url: str) -> str | None:
    """The user-info secret of ``url`` (its password, or a user-info without one), if any."""
    match = _URL.search(url)
    if match is None or "@" not in match.group(2):
        return None
    userinfo = match.group(2)[: match.group(2).rfind("@")]
    user, colon, password = userinfo.partition(":")
    return (password if colon else user) or None


@lru_cache(maxsize=256)
def secret_forms(secret: str) -> tuple[str, ...]:
    """Every form ``secret`` may be echoed in: raw, URL-encoded, base64, JSON-escaped.

    URL-encoded: ``quote`` (with and without ``/`` kept) and ``quote_plus``; base64: standard and
    URL-safe, with and without padding. Empty for an empty secret.
    """
    if not secret:
        return ()
    raw = secret.encode("utf-8")
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret, safe=""),
        quote_plus(secret),
        orjson.dumps(secret).decode()[1:-1],
    }
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms.add(text)
        forms.add(text.rstrip("="))
    # Lower-case percent escapes are just as valid (some servers re-encode that way).
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in forms}
    return tuple(form for form in forms if form)


def expand_secrets(secrets: Iterable[str]) -> tuple[str, ...]:
    """All forms of all ``secrets``, longest first (so a longer form is never half-replaced)."""
    forms = {form for secret in secrets for form in secret_forms(secret)}
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret replaced by ``**********``, URL passwords by ``****``.

    For error paths, where the secrets are known only then. A hot path with a fixed set of secrets
    builds a :class:`Redactor` once instead (one regular-expression pass per call).
    """
    return mask_url_credentials(mask_forms(text, expand_secrets(secrets)))


def mask_forms(text: str, forms: tuple[str, ...]) -> str:
    """``text`` with each of ``forms`` (from :func:`expand_secrets`) replaced by ``**********``."""
    pattern = _forms_pattern(forms)
    return text if pattern is None else pattern.sub(MASK, text)


@lru_cache(maxsize=64)
def _forms_pattern(forms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for all ``forms``, longest first; short ones only as whole tokens."""
    if not forms:
        return None
    parts = []
    for form in sorted(forms, key=len, reverse=True):
        escaped = re.escape(form)
        if len(form) < SHORT_SECRET_CHARS:
            escaped = rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"
        parts.append(escaped)
    return re.compile("|".join(parts))


class Redactor:
    """Replaces every form of a fixed set of secrets, and URL passwords, in text.

    Build it once (at start-up): the forms are computed then and joined into one pattern, so each
    call is a single regular-expression pass.
    """

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        self._pattern = _forms_pattern(expand_secrets(secrets))

    def __call__(self, text: str) -> str:
        """``text`` with secrets replaced by ``**********`` and URL passwords by ``****``."""
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return mask_url_credentials(text)
