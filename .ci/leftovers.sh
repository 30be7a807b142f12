#!/usr/bin/env bash
# After `make test`: nothing the tests made may stay on the Docker daemon or
# in the test registry. Test-made things are marked: containers, networks and
# images of test platforms carry qufop.platform=test-*, other test images
# qufop.test=1, and test registry repositories start with test- or qtest/.
# Whatever is found is listed and removed, and the check fails, except the
# busybox base image the tests imported themselves, which is only removed.
# Nothing else (a `qufop dev` of the user's on the same daemon) is touched.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/sbin:/sbin
command -v docker >/dev/null && docker info >/dev/null 2>&1 || exit 0

left=()
is_test_platform() { [[ $1 == test-* ]]; }

while read -r id plat name; do
  [ -n "$id" ] || continue
  is_test_platform "$plat" || continue
  left+=("container $name (platform $plat)")
  docker rm -f "$id" >/dev/null 2>&1
done < <(docker ps -a --filter label=qufop.platform --format '{{.ID}} {{.Label "qufop.platform"}} {{.Names}}')

while read -r id plat name; do
  [ -n "$id" ] || continue
  is_test_platform "$plat" || continue
  left+=("network $name (platform $plat)")
  docker network rm "$id" >/dev/null 2>&1
done < <(docker network ls --filter label=qufop.platform --format '{{.ID}} {{.Label "qufop.platform"}} {{.Name}}')

base=local/busybox:1
images() { # images of test platforms or marked as test images, the base last
  # `docker images --format` has no .Label on Docker 20.10: inspect them.
  for id in $(docker images -q --filter label=qufop.platform | sort -u); do
    docker image inspect -f '{{.Id}} {{if .RepoTags}}{{index .RepoTags 0}}{{else}}<none>{{end}} {{index .Config.Labels "qufop.platform"}}' "$id" 2>/dev/null
  done | while read -r id ref plat; do is_test_platform "$plat" && echo "$id $ref"; done
  docker images --filter label=qufop.test=1 --format '{{.ID}} {{.Repository}}:{{.Tag}}' | grep -v " $base\$"
}
while read -r id ref; do
  [ -n "$id" ] || continue
  left+=("image $ref")
  docker rmi -f "$id" >/dev/null 2>&1
done < <(images | sort -u)
# The base image the tests imported (never one the user had before).
if [ "$(docker image inspect -f '{{index .Config.Labels "qufop.test"}}' "$base" 2>/dev/null)" = 1 ]; then
  docker rmi "$base" >/dev/null 2>&1 || left+=("image $base (still in use)")
fi

# Registry repositories of tests, in the registry .ci/services.sh starts.
reg=127.0.0.1:5000
root=${QUFOP_TEST_REGISTRY_ROOT:-/var/lib/qufop-registry}
repos=$root/docker/registry/v2/repositories
if curl -fsS "http://$reg/v2/" >/dev/null 2>&1 && [ -d "$repos" ]; then
  # {"repositories":["a/b","c/d"]}: the names are the quoted words but the key.
  for r in $(curl -fsS "http://$reg/v2/_catalog?n=1000" | grep -o '"[^"]*"' | tr -d '"' | grep -vx repositories); do
    case $r in
      test-*|qtest/*|admin/test-*)
        left+=("registry repository $r")
        rm -rf "${repos:?}/$r" ;;
    esac
  done
  find "$repos" -mindepth 1 -type d -empty -delete 2>/dev/null
fi

if [ ${#left[@]} -gt 0 ]; then
  echo "leftovers: the tests left ${#left[@]} thing(s) behind (now removed):"
  printf '  %s\n' "${left[@]}"
  exit 1
fi
echo "leftovers: none"
