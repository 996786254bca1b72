#!/bin/sh
# Copy bundles written by `tflbayes convert` into the Android app's assets (what `./gradlew :app:copyBundles`
# does, for machines without Gradle).
#
#   android_demo/copy_bundles.sh bundles/ens-batched-int8 bundles/mcd-stochastic-float32 ...
#
# Each bundle folder must hold manifest.json; its manifest.json and .tflite files (not the Coral-compiled
# *_edgetpu.tflite: phones have no Edge TPU) go to app/src/main/assets/bundles/<folder name>/, replacing an
# older copy atomically (a failed copy leaves the old one).
set -eu
if [ "$#" -eq 0 ]; then
    echo "usage: $0 BUNDLE_DIR [BUNDLE_DIR ...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
assets="${TFLBAYES_ASSETS:-$here/app/src/main/assets/bundles}"
mkdir -p "$assets"
for bundle in "$@"; do
    bundle=${bundle%/}
    if [ ! -f "$bundle/manifest.json" ]; then
        echo "error: $bundle is not a tflbayes bundle (no manifest.json)" >&2
        exit 1
    fi
    name=$(basename "$bundle")
    tmp="$assets/.$name.tmp.$$"
    rm -rf "$tmp"
    mkdir "$tmp"
    cp "$bundle/manifest.json" "$tmp/"
    found=0
    for f in "$bundle"/*.tflite; do
        [ -f "$f" ] || continue
        case "$f" in *_edgetpu.tflite) continue ;; esac
        cp "$f" "$tmp/"
        found=$((found + 1))
    done
    if [ "$found" -eq 0 ]; then
        rm -rf "$tmp"
        echo "error: $bundle holds no .tflite files" >&2
        exit 1
    fi
    rm -rf "$assets/$name"
    mv "$tmp" "$assets/$name"
    echo "copied $bundle ($found graph file(s)) to $assets/$name"
done
