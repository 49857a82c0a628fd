#!/usr/bin/env python3
"""Regenerates corpus/: images made by build/hv and build/tests/vhd-pattern, stored in the
fuzz target's sparse encoding (only non-zero 512-byte runs), so each seed is a few KB.
Run from the repository root after `make`:  python3 tests/fuzz/vhd/make-corpus.py"""
import os, struct, subprocess, tempfile

root = os.getcwd()
hv = os.path.join(root, "build/hv")
pat = os.path.join(root, "build/tests/vhd-pattern")
out = os.path.join(root, "tests/fuzz/vhd/corpus")

def encode(data):
    recs = []
    i = 0
    while i < len(data):
        if data[i:i + 512].strip(b"\0"):
            j = i
            while j < len(data) and data[j:j + 512].strip(b"\0") and j - i < 60 * 512:
                j += 512
            chunk = data[i:j].rstrip(b"\0")
            recs.append(struct.pack("<IH", i // 512, len(chunk)) + chunk)
            i = j
        else:
            i += 512
    return b"VDSPARSE" + struct.pack("<I", (len(data) + 511) // 512) + b"".join(recs)

def run(*args, env=None):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)

with tempfile.TemporaryDirectory() as t:
    os.chdir(t)
    run(hv, "New-VHD", "-Path", "dyn.vhdx", "-SizeBytes", "8MB", "-BlockSizeBytes", "1MB")
    run(pat, "dyn.vhdx", "1048576", "1024", "1")
    run(hv, "New-VHD", "-Path", "log.vhdx", "-SizeBytes", "8MB", "-BlockSizeBytes", "1MB")
    run(pat, "log.vhdx", "0", "1024", "2", env=dict(os.environ, VHD_PATTERN_CRASH="1"))
    run(hv, "New-VHD", "-Path", "child.vhdx", "-ParentPath", "dyn.vhdx")
    run(pat, "child.vhdx", "4096", "1024", "3")
    run(hv, "New-VHD", "-Path", "dyn.vhd", "-SizeBytes", "8MB")
    run(pat, "dyn.vhd", "1048576", "1024", "4")
    run(hv, "New-VHD", "-Path", "child.vhd", "-ParentPath", "dyn.vhd")
    run(pat, "child.vhd", "512", "1024", "5")
    run(hv, "New-VHD", "-Path", "fixed.vhd", "-SizeBytes", "1MB", "-Fixed")
    for name in ["dyn.vhdx", "log.vhdx", "child.vhdx", "dyn.vhd", "child.vhd", "fixed.vhd"]:
        with open(name, "rb") as f:
            data = f.read()
        with open(os.path.join(out, name.replace(".", "-")), "wb") as f:
            f.write(encode(data))
    # and one plain truncated file per format, for the non-sparse path
    with open("dyn.vhdx", "rb") as f:
        head = f.read(300 * 1024)
    with open(os.path.join(out, "truncated-vhdx"), "wb") as f:
        f.write(encode(head))
    with open("dyn.vhd", "rb") as f:
        data = f.read()
    with open(os.path.join(out, "raw-vhd-head"), "wb") as f:
        f.write(data[:2048])
