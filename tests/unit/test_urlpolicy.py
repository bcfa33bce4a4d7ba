"""Camera URL policy (SSRF): each refused address class, the allow-list, DNS answers, the
decoder's pinning; secrets in URLs: masking, restoring, sealing."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError

from vidpipe.cameras import CameraSecretUnreadable, UrlCipher
from vidpipe.decoding.source import SourceOpenError, read_frames
from vidpipe.settings import CameraSettings
from vidpipe.urlpolicy import (
    IPAddress,
    UrlPolicy,
    UrlRefused,
    check_camera_url,
    connect_url,
    parse_allowed,
)
from vidpipe.urls import StoredSecretsMismatch, mask_url, restore_secrets, without_password

TENANT = UrlPolicy()


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    """A fake DNS answering every name with ``addresses``."""

    def resolve(host: str) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


def unresolvable(host: str) -> list[IPAddress]:
    raise OSError(f"{host}: Name or service not known")


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("file:///etc/passwd", "reserved to platform administrators"),
        ("rtsp://127.0.0.1:8554/x", "loopback"),
        ("rtsp://127.9.9.9/x", "loopback"),
        ("rtsp://[::1]/x", "loopback"),
        ("rtsp://[::ffff:127.0.0.1]/x", "loopback"),  # IPv4-mapped IPv6
        ("rtsp://0.0.0.0/x", "unspecified"),
        ("rtsp://169.254.169.254:80/x", "cloud metadata"),
        ("rtsp://169.254.10.10/x", "link-local"),
        ("rtsp://[fe80::1]/x", "link-local"),
        ("rtsp://[fd00:ec2::254]/x", "cloud metadata"),
        ("rtsp://100.100.100.200/x", "cloud metadata"),
        ("rtsp://metadata.google.internal/x", "cloud metadata"),
        ("rtsp://224.0.0.1/x", "multicast"),
        ("rtsp://240.0.0.1/x", "reserved"),
    ],
)
def test_check_when_refused_class_then_url_refused_naming_it(url: str, refused: str) -> None:
    with pytest.raises(UrlRefused, match=refused):
        check_camera_url(url, TENANT, resolve=unresolvable)


def test_check_when_name_resolves_to_loopback_then_refused_naming_the_address() -> None:
    with pytest.raises(UrlRefused, match=r"'cam.example' resolves to 127.0.0.1, which is a loop"):
        check_camera_url("rtsp://cam.example/x", TENANT, resolve=resolver("10.0.0.5", "127.0.0.1"))
    with pytest.raises(UrlRefused, match="loopback"):
        check_camera_url("rtsp://localhost:8554/x", TENANT)  # the real resolver
    with pytest.raises(UrlRefused, match="loopback"):
        check_camera_url("rtsp://127.1/x", TENANT)  # inet_aton's short form


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.0.0.5:554/stream",
        "rtsps://user:pw@192.168.1.20/live",
        "rtsp://172.16.0.1/x",
        "rtsp://[fc00::5]/x",
        "rtsp://93.184.216.34/x",
    ],
)
def test_check_when_private_or_public_then_allowed(url: str) -> None:
    check_camera_url(url, TENANT, resolve=unresolvable)


def test_check_when_name_does_not_resolve_then_left_to_the_decoder() -> None:
    check_camera_url("rtsp://cam.site.lan/x", TENANT, resolve=unresolvable)


def test_check_when_private_off_then_private_refused_unless_allow_listed() -> None:
    strict = UrlPolicy.of(CameraSettings(allow_private=False, allow=("10.1.0.0/16",)))
    with pytest.raises(UrlRefused, match="private"):
        check_camera_url("rtsp://10.0.0.5/x", strict)
    check_camera_url("rtsp://10.1.2.3/x", strict)


def test_allow_list_when_cidr_with_port_then_only_that_port() -> None:
    demo = UrlPolicy.of(CameraSettings(allow=("127.0.0.1/32:8554", "[::1/128]:8554")))
    check_camera_url("rtsp://127.0.0.1:8554/vtest", demo)
    check_camera_url("rtsp://[::1]:8554/vtest", demo)
    with pytest.raises(UrlRefused, match="loopback"):
        check_camera_url("rtsp://127.0.0.1:5432/x", demo)
    with pytest.raises(UrlRefused, match="loopback"):
        check_camera_url("rtsp://127.0.0.2:8554/x", demo)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "10.0.0.1:port", "[::1]8554", "10.0.0.1:99999"])
def test_allow_list_when_malformed_then_settings_refused(entry: str) -> None:
    with pytest.raises((ValueError, ValidationError)):
        CameraSettings(allow=(entry,))
    assert parse_allowed("127.0.0.1").port is None


def test_file_urls_when_admin_or_allowed_then_accepted() -> None:
    check_camera_url("file:///data/v.mp4", TENANT, platform_admin=True)
    check_camera_url("file:///data/v.mp4", UrlPolicy(allow_files=True))


def test_connect_when_name_resolves_then_pinned_to_the_checked_address() -> None:
    pinned = connect_url("rtsp://u:p@cam.example:554/s?x=1", TENANT, resolver("10.0.0.7"))
    assert pinned == "rtsp://u:p@10.0.0.7:554/s?x=1"
    v6 = connect_url("rtsp://cam.example/s", TENANT, resolver("fc00::7"))
    assert v6 == "rtsp://[fc00::7]/s"


def test_connect_when_dns_rebinds_to_loopback_then_refused() -> None:
    # the name was fine when saved; at connect time it answers 127.0.0.1
    check_camera_url("rtsp://cam.example/s", TENANT, resolve=resolver("10.0.0.7"))
    with pytest.raises(UrlRefused, match="loopback"):
        connect_url("rtsp://cam.example/s", TENANT, resolver("127.0.0.1"))
    with pytest.raises(OSError):
        connect_url("rtsp://cam.example/s", TENANT, unresolvable)


def test_decoder_source_when_policy_refuses_then_not_opened(tmp_path: Path) -> None:
    clip = tmp_path / "v.avi"
    clip.write_bytes(b"")

    def policy(url: str) -> str:
        return connect_url(url, TENANT)

    with pytest.raises(SourceOpenError, match="reserved to platform administrators"):
        read_frames(clip.as_uri(), target_fps=None, stop=threading.Event(), reconnect=False,
                    connect=policy)  # fmt: skip
    frames = read_frames("rtsp://localhost:1/x", target_fps=None, stop=threading.Event(),
                         reconnect=False, connect=policy)  # fmt: skip
    with pytest.raises(SourceOpenError, match="loopback"):
        next(iter(frames))


def test_mask_url_when_query_secrets_then_masked() -> None:
    url = "rtsp://admin:hunter22@10.0.0.5/s?channel=1&password=hunter22&Token=t0k"
    masked = mask_url(url)
    assert "hunter22" not in masked and "t0k" not in masked
    assert masked == "rtsp://admin:***@10.0.0.5/s?channel=1&password=***&Token=***"
    assert without_password(url) == "rtsp://admin@10.0.0.5/s?channel=1&password=***&Token=***"


def test_restore_when_same_host_then_stored_secrets_kept() -> None:
    stored = "rtsp://admin:hunter22@10.0.0.5/s?password=q1"
    assert restore_secrets("rtsp://admin@10.0.0.5/t?password=***", stored) == (
        "rtsp://admin:hunter22@10.0.0.5/t?password=q1"
    )
    assert restore_secrets("rtsp://admin:***@10.0.0.5/s", stored).startswith(
        "rtsp://admin:hunter22@"
    )
    assert restore_secrets("rtsp://admin:new@10.0.0.5/s", stored) == "rtsp://admin:new@10.0.0.5/s"
    assert restore_secrets("rtsp://other@10.0.0.5/s", stored) == "rtsp://other@10.0.0.5/s"


def test_restore_when_other_host_then_no_secret_travels() -> None:
    stored = "rtsp://admin:hunter22@10.0.0.5/s"
    assert restore_secrets("rtsp://admin@10.6.6.6/s", stored) == "rtsp://admin@10.6.6.6/s"
    with pytest.raises(StoredSecretsMismatch):
        restore_secrets("rtsp://admin:***@10.6.6.6/s", stored)


def test_cipher_when_keys_rotate_then_old_tokens_open_and_reseal() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    url = "rtsp://admin:hunter22@10.0.0.5/s"
    masked, token = UrlCipher([old]).seal(url)
    assert masked == "rtsp://admin:***@10.0.0.5/s" and token and "hunter22" not in token
    rotated = UrlCipher([new, old])
    assert rotated.open(masked, token) == url
    _, resealed = rotated.seal(rotated.open(masked, token))
    assert UrlCipher([new]).open(masked, resealed) == url
    with pytest.raises(CameraSecretUnreadable):
        UrlCipher([new]).open(masked, token)
    keys = CameraSettings(keys=(SecretStr(new),))
    assert UrlCipher.of(keys).open(masked, resealed) == url
    assert UrlCipher([new]).seal("rtsp://10.0.0.5/s") == ("rtsp://10.0.0.5/s", None)
