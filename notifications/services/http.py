"""One HTTP POST of the outbox, connected to the address the SSRF guard checked.

The URL's host is resolved once (`safety.url_resolve`) and the socket is opened to one of
those addresses, never to the name, so nothing looks the name up again between the check
and the connection. TLS still checks the certificate against the URL's host name: it is
sent as SNI and matched by the SSL context, exactly as a connection by name would.
Redirects are not followed (a 3xx to an internal address must not be), and the response
body is read only up to a short excerpt.
"""

import ssl
from dataclasses import dataclass
from functools import lru_cache

import certifi
from django.conf import settings
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3 import exceptions as urllib3_errors

from notifications.services.safety import UnsafeUrl, url_resolve

# Bytes of a response body read at most; what is stored is cut shorter still.
EXCERPT_BYTES = 1024


class PostError(Exception):
    """An attempt failed; `error_type` is a short metric label, `status` the HTTP status."""

    def __init__(self, message: str, *, error_type: str, status: int | None = None, excerpt=""):
        super().__init__(message)
        self.error_type = error_type
        self.status = status
        self.excerpt = excerpt


@dataclass(frozen=True)
class Reply:
    status: int
    excerpt: str


@lru_cache(maxsize=4)
def _tls_context(cafile: str) -> ssl.SSLContext:
    # Verifies the chain and the host name (check_hostname, against the SNI name).
    return ssl.create_default_context(cafile=cafile)


def tls_context() -> ssl.SSLContext:
    return _tls_context(settings.NOTIFY_CA_BUNDLE or certifi.where())


def _open(scheme: str, address: str, port: int, host: str, timeout: Timeout):
    if scheme == "https":
        return HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            ssl_context=tls_context(),
            server_hostname=host,
            assert_hostname=host,
        )
    return HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    allow_private: bool | None = None,
) -> Reply:
    """POST `body` to `url` once; return the reply of a 2xx, else raise PostError.

    Each resolved address is tried in turn until one accepts the connection; a request
    that reached a server is never repeated here (the dispatcher's retry does that).
    """
    try:
        target = url_resolve(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise PostError(f"unsafe url: {exc}", error_type="unsafe_url") from None
    limits = Timeout(connect=timeout, read=timeout)
    request_headers = {**headers, "host": target.host_header}
    last_error: PostError | None = None
    for address in target.addresses:
        pool = _open(target.scheme, address, target.port, target.host, limits)
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=request_headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                raw = response.read(EXCERPT_BYTES)
            finally:
                response.release_conn()
        # NewConnectionError is a subclass of ConnectTimeoutError: it goes first.
        except urllib3_errors.NewConnectionError as exc:
            last_error = PostError(f"connection error: {_reason(exc)}", error_type="connection")
            continue
        except urllib3_errors.ConnectTimeoutError:
            last_error = PostError("timeout", error_type="timeout")
            continue
        except urllib3_errors.TimeoutError:
            raise PostError("timeout", error_type="timeout") from None
        except urllib3_errors.SSLError as exc:
            raise PostError(f"tls error: {_reason(exc)}", error_type="tls") from None
        except urllib3_errors.HTTPError as exc:
            raise PostError(
                f"connection error: {type(exc).__name__}", error_type="connection"
            ) from None
        finally:
            pool.close()
        excerpt = raw.decode("utf-8", "replace")
        if not 200 <= response.status < 300:
            raise PostError(
                f"HTTP {response.status}",
                error_type=f"http_{response.status}",
                status=response.status,
                excerpt=excerpt,
            )
        return Reply(response.status, excerpt)
    assert last_error is not None  # url_resolve returns at least one address
    raise last_error


def _reason(exc: Exception) -> str:
    """The cause of a transport error without the URL or headers urllib3 may repeat."""
    cause = exc
    for _ in range(10):  # the innermost cause, on a bounded walk
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    if isinstance(cause, ssl.SSLCertVerificationError):
        return cause.verify_message or "certificate verify failed"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return type(cause).__name__
