#!/usr/bin/env python3
"""Writes a minimal bzImage whose 64-bit entry powers the VM off through ACPI S5
(PM1a_CNT at 0x604, SLP_TYP 5 | SLP_EN) or, with --halt, halts with interrupts off.
It measures the VMM alone: exec to first guest instruction, and RSS beyond guest RAM."""
import struct
import sys

halt = "--halt" in sys.argv
path = [a for a in sys.argv[1:] if not a.startswith("--")][0]
setup_sects = 1
img = bytearray(512 * (setup_sects + 1))
img[0x1F1] = setup_sects
struct.pack_into("<H", img, 0x1FE, 0xAA55)
img[0x200:0x202] = b"\xEB\x66"          # jmp over the header (header ends at 0x268)
img[0x202:0x206] = b"HdrS"
struct.pack_into("<H", img, 0x206, 0x020F)  # boot protocol 2.15
img[0x211] = 0x01                       # LOADED_HIGH
struct.pack_into("<I", img, 0x22C, 0x7FFFFFFF)  # initrd_addr_max
struct.pack_into("<H", img, 0x236, 0x0001)      # XLF_KERNEL_64
struct.pack_into("<I", img, 0x238, 2048)        # cmdline_size
struct.pack_into("<I", img, 0x260, 0x10000)     # init_size
# Protected-mode part, loaded at 1 MiB; the 64-bit entry is at +0x200.
code = bytearray(0x200)
if halt:
    code += b"\xFA\xF4\xEB\xFD"          # cli; hlt; jmp back to hlt
else:
    code += b"\x66\xBA\x04\x06"          # mov dx, 0x604
    code += b"\x66\xB8\x00\x34"          # mov ax, (5 << 10) | (1 << 13)
    code += b"\x66\xEF"                  # out dx, ax
    code += b"\xF4\xEB\xFD"              # hlt; jmp back
code += bytes(4096 - len(code))             # the loader wants at least a page
open(path, "wb").write(bytes(img + code))
