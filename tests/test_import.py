import subprocess
import sys


def test_import_evrt_pulls_in_neither_torch_nor_tonic():
    code = (
        "import sys, evrt, evrt.cli; evrt.cli.build_parser();"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tonic', 'spikingjelly'));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import evrt imported: {out.stdout.strip()}"
