#!/usr/bin/env bash
# Install the Debian packages some optional features use, when missing and possible.
set -u
need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v sox >/dev/null 2>&1 || need+=(sox)
[ ${#need[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "sysdeps: installing ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "sysdeps: could not install ${need[*]}; tests that need them will skip"
else
  echo "sysdeps: missing ${need[*]} (not root or no apt-get); tests that need them will skip"
fi
exit 0
