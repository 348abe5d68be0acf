#!/usr/bin/env bash
# The demo: build a wheel whose extension links a private library outside the wheel, audit it,
# repair it, then install the repaired wheel into a fresh venv and import it with the original
# library deleted.  Usage: bash demo/run.sh VENV   (a venv with repairwheel installed)
set -euo pipefail
venv=$(cd "${1:?usage: demo/run.sh VENV}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$venv/bin/python" "$here/build.py" "$work/build" >/dev/null
wheel=$(ls "$work"/build/dist/*.whl)
export LD_LIBRARY_PATH="$work/build/lib"   # where the "system" copy of libgreet lives

echo "== repairwheel show (before)"
"$venv/bin/repairwheel" show "$wheel"
echo
echo "== repairwheel fix"
"$venv/bin/repairwheel" fix -w "$work/wheelhouse" "$wheel"
fixed=$(ls "$work"/wheelhouse/*.whl)
echo
echo "== repairwheel show (after)"
"$venv/bin/repairwheel" show "$fixed" | head -n 1

echo
echo "== install the repaired wheel in a fresh venv; delete the original library; import"
unset LD_LIBRARY_PATH
rm -rf "$work/build/lib"
"$venv/bin/python" -m venv "$work/try"  # the interpreter the wheel was built for
"$work/try/bin/pip" install -q --no-index "$fixed"
(cd "$work" && "$work/try/bin/python" -c "import greeter; print(greeter.hello('world'))")
