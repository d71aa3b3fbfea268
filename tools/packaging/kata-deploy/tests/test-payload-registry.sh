#!/usr/bin/env bash
# The payload override (seed 004) against a real registry: Debian's docker-registry on
# 127.0.0.1 (a free port) with htpasswd basic auth over TLS, with a CA this test makes.
#   - build-payload.sh builds the payload image (umoci) and pushes it (skopeo, credentials);
#     the installer inside the image runs;
#   - kata-deploy install with PAYLOAD_IMAGE: refused without the payload-secret credentials
#     (a clear error), with a wrong password, and without the registry's CA; nothing changed;
#   - with PAYLOAD_USERNAME/PAYLOAD_PASSWORD it installs that payload and logs the taint
#     warning; the password appears in no log and no temp file is left;
#   - custom-payload.sh makes a custom payload from it (a replaced file), which installs;
#   - cleanup leaves containerd's config byte-identical.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need docker-registry htpasswd openssl skopeo umoci curl containerd ctr
[ "$(id -u)" = 0 ] || skip "needs root (containerd, umoci unpack of root-owned files)"

# ---- the registry: TLS with our own CA, basic auth
mkdir -p "$T/certs" "$T/registry" "$T/tmp"
(
  cd "$T"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out certs/ca.crt -days 1 \
    -subj "/CN=kata-deploy test CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA certs/ca.crt -CAkey ca.key -CAcreateserial \
    -out server.crt -days 1 -extfile server.ext 2>/dev/null
) || fail "making the test CA and server certificate failed"
USER_NAME=kata-payload
PASSWORD="s3cret-$RANDOM$RANDOM"
htpasswd -Bbn "$USER_NAME" "$PASSWORD" >"$T/htpasswd" 2>/dev/null
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: 127.0.0.1:$PORT
  tls:
    certificate: $T/server.crt
    key: $T/server.key
auth:
  htpasswd:
    realm: kata-deploy-test
    path: $T/htpasswd
YAML
setsid docker-registry serve "$T/registry.yml" >"$T/registry.log" 2>&1 </dev/null &
REGISTRY_PID=$!
stop_registry() { kill -TERM "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null; }
on_exit stop_registry
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/certs/ca.crt" "https://127.0.0.1:$PORT/v2/" || true)
  [ "$code" = 401 ] && break
  sleep 0.1
done
[ "$code" = 401 ] || fail "the registry did not answer 401 on https://127.0.0.1:$PORT/v2/ (got $code): $(tail -5 "$T/registry.log")"
REG=127.0.0.1:$PORT
pass "registry on https://$REG with basic auth (401 without credentials)"

# ---- the payload image
PAYLOAD=$T/payload
PAYLOAD_STRIP=1 make_payload "$PAYLOAD"
echo "registry-payload" >"$PAYLOAD/VERSION"
build() { TMPDIR=$T/tmp "$DEPLOY_DIR/build-payload.sh" --from-dir "$PAYLOAD" --installer "$KATA_DEPLOY" "$@"; }
if build --push "docker://$REG/kata/payload:1" --dest-cert-dir "$T/certs" >"$T/push.log" 2>&1; then
  fail "pushing without credentials worked"
fi
build --push "docker://$REG/kata/payload:1" --dest-cert-dir "$T/certs" \
  --dest-creds "$USER_NAME:$PASSWORD" >"$T/push.log" 2>&1 || fail "build-payload.sh failed: $(cat "$T/push.log")"
skopeo inspect --cert-dir "$T/certs" --creds "$USER_NAME:$PASSWORD" "docker://$REG/kata/payload:1" >"$T/inspect.json" ||
  fail "the pushed image cannot be inspected"
grep -q '"org.opencontainers.image.title": "kata-deploy"' "$T/inspect.json" || fail "no kata-deploy label: $(cat "$T/inspect.json")"
# The installer in the image runs there (its libraries came along).
skopeo copy --quiet --src-cert-dir "$T/certs" --src-creds "$USER_NAME:$PASSWORD" \
  "docker://$REG/kata/payload:1" "oci:$T/pulled:1"
umoci raw unpack --image "$T/pulled:1" "$T/pulled-rootfs" >/dev/null
chroot "$T/pulled-rootfs" /usr/bin/kata-deploy --version | grep -q '^kata-deploy : ' || fail "the image's installer does not run"
chroot "$T/pulled-rootfs" /bin/sh -c 'kata-deploy --payload-dir /opt/kata-artifacts runtimes' | grep -q '^kata-qemu ' ||
  fail "the image's installer does not list the runtime classes"
[ -x "$T/pulled-rootfs/opt/kata-artifacts/bin/containerd-shim-kata-v2" ] || fail "no payload at /opt/kata-artifacts in the image"
pass "build-payload.sh pushed $REG/kata/payload:1 with credentials (refused without); its installer runs in it"

no_pull_left() {
  local d
  for d in "$T"/tmp/kata-deploy-payload.*; do [ ! -e "$d" ] || fail "$1 left a temp dir: $d"; done
}

# ---- install from the registry
start_containerd
PREFIX=$T/opt/kata
mkdir -p "$T/opt" "$T/empty"
export TMPDIR=$T/tmp INSTALLATION_PREFIX=$PREFIX PAYLOAD_IMAGE=$REG/kata/payload:1

expect_deploy_fail "pulling payload image $REG/kata/payload:1: skopeo copy failed \(the registry wants credentials: create the Secret payload-secret" \
  install --payload-cert-dir "$T/certs" --payload-dir "$T/empty"
nothing_changed "$PREFIX"
PAYLOAD_USERNAME=$USER_NAME PAYLOAD_PASSWORD=wrong expect_deploy_fail \
  "skopeo copy failed \(the registry refused the credentials of user $USER_NAME\)" \
  install --payload-cert-dir "$T/certs"
nothing_changed "$PREFIX"
PAYLOAD_USERNAME=$USER_NAME PAYLOAD_PASSWORD=$PASSWORD expect_deploy_fail \
  "pulling payload image $REG/kata/payload:1: skopeo copy failed: .*(x509|certificate)" install
nothing_changed "$PREFIX"
[ ! -e "$PREFIX" ] || fail "a refused install created $PREFIX"
no_pull_left "a refused pull"
pass "refused: no credentials, wrong password, unknown CA; nothing changed"

PAYLOAD_USERNAME=$USER_NAME PAYLOAD_PASSWORD=$PASSWORD PAYLOAD_CERT_DIR=$T/certs deploy install ||
  { show_deploy_log; fail "install from $PAYLOAD_IMAGE failed"; }
grep '"tainted":"true"' "$T/deploy.log" | grep -q 'installation is tainted by a custom payload' ||
  { show_deploy_log; fail "no taint warning in the log"; }
grep '"level":"warning"' "$T/deploy.log" | grep -o '"msg":"[^"]*"' | sed 's/^/    warning: /'
[ "$(cat "$PREFIX/VERSION")" = registry-payload ] || fail "the pulled payload is not what was installed"
cmp -s "$PREFIX/bin/containerd-shim-kata-v2" "$PAYLOAD/bin/containerd-shim-kata-v2" || fail "the installed shim differs from the pushed one"
if grep -rq -- "$PASSWORD" "$T/deploy.log" "$T/deploy.out" "$PREFIX" "$(dirname "$CONFIG")"; then fail "the password was written somewhere"; fi
no_pull_left "the pull"
served=$(cri_runtimes)
[ -z "$served" ] || [[ " $served " == *" kata-qemu "* ]] || fail "kata-qemu is not served: $served"
pass "installed $PAYLOAD_IMAGE with the secret's credentials; taint warning logged; ${served:+served: $served}"

deploy cleanup || { show_deploy_log; fail "cleanup failed"; }
cmp "$T/config.toml.before" "$CONFIG" || fail "cleanup did not restore the config byte for byte"
nothing_changed "$PREFIX"
[ ! -e "$PREFIX" ] || fail "cleanup left $PREFIX"

# ---- a custom payload made from it
echo "custom build $RANDOM" >"$T/marker"
TMPDIR=$T/tmp "$DEPLOY_DIR/custom-payload.sh" --from "docker://$REG/kata/payload:1" \
  --src-cert-dir "$T/certs" --src-creds "$USER_NAME:$PASSWORD" \
  --replace "$T/marker:share/kata-containers/custom-marker" \
  --push "docker://$REG/kata/payload:custom" --dest-cert-dir "$T/certs" \
  --dest-creds "$USER_NAME:$PASSWORD" >"$T/custom.log" 2>&1 || fail "custom-payload.sh failed: $(cat "$T/custom.log")"
PAYLOAD_IMAGE=$REG/kata/payload:custom PAYLOAD_USERNAME=$USER_NAME PAYLOAD_PASSWORD=$PASSWORD \
  PAYLOAD_CERT_DIR=$T/certs deploy install || { show_deploy_log; fail "install of the custom payload failed"; }
cmp -s "$T/marker" "$PREFIX/share/kata-containers/custom-marker" || fail "the custom payload's file was not installed"
grep -q 'installation is tainted' "$T/deploy.log" || fail "no taint warning for the custom payload"
deploy cleanup || { show_deploy_log; fail "cleanup of the custom payload failed"; }
cmp "$T/config.toml.before" "$CONFIG" || fail "cleanup did not restore the config byte for byte"
nothing_changed "$PREFIX"
wait_containerd
pass "custom-payload.sh: replaced file installed from $REG/kata/payload:custom; cleanup restored the config (cmp)"
