"""Write, for the wine smoke test only, the system DLLs that wine 8.0 lacks and the bundled wheels need.

cryptography's Rust extension (and anything built by Rust >= 1.78) imports ``ProcessPrng`` from
``bcryptprimitives.dll``, which Windows 10 and later have and wine 8.0 does not: the import then fails with
"DLL load failed ... Module not found". This writes a minimal 64-bit PE DLL whose only content is an export table
forwarding ``ProcessPrng`` to ``advapi32.SystemFunction036`` (RtlGenRandom: same arguments, fills the buffer with
random bytes). It goes into the throw-away wine prefix's system32, never into the setup or onto a real Windows.
Usage: python wine_shims.py SYSTEM32_DIR
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

FILE_ALIGN = 0x200
SECTION_RVA = 0x1000


def forwarder_dll(name: str, forwards: dict[str, str]) -> bytes:
    """A PE32+ DLL named ``name`` exporting each key as a forwarder to its value ("module.Function")."""
    names = sorted(forwards)
    count = len(names)
    # Layout of the one section (all RVAs relative to the image): directory, functions, names, ordinals, strings.
    eat = SECTION_RVA + 40
    ent = eat + 4 * count
    ordinals = ent + 4 * count
    strings = bytearray()
    strings_rva = ordinals + 2 * count

    def add(text: str) -> int:
        rva = strings_rva + len(strings)
        strings.extend(text.encode("ascii") + b"\0")
        return rva

    dll_name = add(name)
    name_rvas = [add(n) for n in names]
    target_rvas = [add(forwards[n]) for n in names]
    edata = struct.pack("<IIHHIIIIIII", 0, 0, 0, 0, dll_name, 1, count, count, eat, ent, ordinals)
    edata += b"".join(struct.pack("<I", rva) for rva in target_rvas)  # inside the directory: forwarders
    edata += b"".join(struct.pack("<I", rva) for rva in name_rvas)
    edata += b"".join(struct.pack("<H", i) for i in range(count))
    edata += bytes(strings)
    raw_size = -(-len(edata) // FILE_ALIGN) * FILE_ALIGN
    image_size = SECTION_RVA + -(-len(edata) // 0x1000) * 0x1000

    dos = b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, 0x2022)  # AMD64; executable, large address, DLL
    optional = struct.pack(
        "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII",
        0x20B, 14, 0, 0, len(edata), 0, 0, 0,  # PE32+, no code, no entry point
        0x180000000, 0x1000, FILE_ALIGN, 6, 0, 0, 0, 6, 0, 0,
        image_size, FILE_ALIGN, 0, 3, 0x100,  # headers, checksum, console subsystem, NX compatible
        0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    )
    directories = struct.pack("<II", SECTION_RVA, len(edata)) + bytes(8 * 15)
    section = struct.pack("<8sIIIIIIHHI", b".edata", len(edata), SECTION_RVA, raw_size, FILE_ALIGN, 0, 0, 0, 0,
                          0x40000040)  # initialised data, readable
    headers = dos + b"PE\0\0" + coff + optional + directories + section
    return headers.ljust(FILE_ALIGN, b"\0") + edata.ljust(raw_size, b"\0")


def main(system32: str) -> None:
    dll = forwarder_dll("bcryptprimitives.dll", {"ProcessPrng": "advapi32.SystemFunction036"})
    (Path(system32) / "bcryptprimitives.dll").write_bytes(dll)


if __name__ == "__main__":
    main(sys.argv[1])
