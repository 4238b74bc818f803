#!/usr/bin/env python3
"""Where a kernel's loops spend their instructions, read from its SASS without a GPU.

Input: the text `nvdisasm -c -g KERNEL.cubin` prints for a cubin built with `-lineinfo` (bench/cuda/README.md, "SASS
without a GPU", says where to get nvdisasm). For the kernel whose name contains NAME, it finds the loops (backward
branches spanning more than --min-bytes) and, for each, prints:
  - its static instruction count and the opcodes that make it up;
  - a latency-weighted walk of its straight-line code as one warp alone would issue it (every instruction at least
    one cycle after the previous one and after its source registers are ready; shared-memory loads and shuffles ~30
    cycles, MUFU ~20, global loads ~500, arithmetic ~5; barriers, mbarrier waits and wgmma waits cost nothing here):
    a floor for the loop's chain that ignores the other warps and every wait on them;
  - the source lines with the most instructions and the most modelled stall cycles.
Static counts include paths a warp or a call skips; read them against chunked_timeline's phases, not as times.

  python3 bench/cuda/sass_loops.py dump.sass specialized_chunked_forward_kernel
"""
import argparse
import collections
import re

INSTRUCTION = re.compile(r"\s*/\*([0-9a-f]{4,6})\*/\s+(.*?)\s*;")
LINE = re.compile(r'\s*//## File "(.*?)", line (\d+)')
LABEL = re.compile(r"^(\.L_x_\d+):")
REGISTER = re.compile(r"\bU?R\d+\b|\bU?P\d\b")
NO_DESTINATION = ("ST", "SYNCS", "BAR", "BRA", "WARPGROUP", "HGMMA", "RED", "BSSY", "BSYNC", "EXIT", "UTMA", "FENCE",
                  "NOP", "ELECT", "CCTL", "MEMBAR", "DEPBAR", "UBLKCP")
PREDICATE_DESTINATIONS = ("ISETP", "FSETP", "UISETP", "PLOP3", "HSETP2", "DSETP")


def latency(opcode):
    if opcode.startswith(("LDS", "LDSM", "SHFL")):
        return 30
    if opcode.startswith(("LDG", "LD.", "LDL")):
        return 500
    if opcode.startswith(("MUFU", "S2R", "S2UR", "CS2R")):
        return 20
    if opcode.startswith("HMMA"):
        return 32
    if opcode.startswith("R2UR"):
        return 8
    if opcode.startswith(NO_DESTINATION):
        return 1
    return 5


def kernel_text(lines, name):
    """The kernel's instructions as (address, text, (file, line)), and its labels' addresses."""
    inside, source, pending, instructions, labels = False, ("?", 0), [], [], {}
    for line in lines:
        if line.startswith(".text."):
            inside = name in line
            continue
        if not inside:
            continue
        if m := LINE.match(line):
            source = (m.group(1).rsplit("/", 1)[-1], int(m.group(2)))
        elif m := LABEL.match(line):
            pending.append(m.group(1))
        elif m := INSTRUCTION.match(line):
            address = int(m.group(1), 16)
            for label in pending:
                labels[label] = address
            pending = []
            instructions.append((address, m.group(2), source))
    return instructions, labels


def operands(text):
    """Opcode, destination registers and source registers of one instruction (a predicate guard is a source)."""
    guard = re.match(r"^(@!?U?P\w+)\s+", text)
    body = text[guard.end():] if guard else text
    opcode, _, rest = body.partition(" ")
    fields = [f.strip() for f in rest.split(",")] if rest else []
    if opcode.startswith(PREDICATE_DESTINATIONS):
        destinations = set(REGISTER.findall(",".join(fields[:2])))
        sources = set(REGISTER.findall(",".join(fields[2:])))
    elif opcode.startswith(NO_DESTINATION) or not fields:
        destinations, sources = set(), set(REGISTER.findall(rest))
    else:
        sources = set(REGISTER.findall(",".join(fields[1:])))
        first = re.match(r"(U?R)(\d+)", fields[0])
        width = 4 if ".128" in opcode else 2 if ".64" in opcode else 1
        if opcode.startswith("LDSM"):
            width = 4 if ".4" in opcode else 2 if ".2" in opcode else 1
        destinations = {f"{first.group(1)}{int(first.group(2)) + k}" for k in range(width)} if first else set()
    if guard:
        sources |= set(REGISTER.findall(guard.group(1)))
    sources -= {"RZ", "URZ", "PT", "UPT"}
    return opcode, destinations, sources


def report(body, top):
    ready = collections.defaultdict(int)
    clock = 0
    count, stalls, opcodes = collections.Counter(), collections.Counter(), collections.Counter()
    for _, text, source in body:
        opcode, destinations, sources = operands(text)
        issue = max([clock + 1] + [ready[r] for r in sources])
        stalls[source] += issue - clock - 1
        clock = issue
        for r in destinations:
            ready[r] = issue + latency(opcode)
        count[source] += 1
        opcodes[opcode.split(".")[0]] += 1
    print(f"  {len(body)} instructions, ~{clock} cycles for one warp alone")
    print("  opcodes: " + ", ".join(f"{op} {n}" for op, n in opcodes.most_common(12)))
    print("  most instructions:")
    for (file, line), n in count.most_common(top):
        print(f"    {n:5d}  {file}:{line}")
    print("  most modelled stall cycles:")
    for (file, line), n in stalls.most_common(top):
        print(f"    {n:5d}  {file}:{line}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dump", help="nvdisasm -c -g output")
    parser.add_argument("kernel", help="a substring of the kernel's mangled name")
    parser.add_argument("--min-bytes", type=int, default=4096, help="shortest loop reported (bytes of code)")
    parser.add_argument("--top", type=int, default=12, help="source lines listed per table")
    args = parser.parse_args()
    with open(args.dump) as f:
        instructions, labels = kernel_text(f, args.kernel)
    if not instructions:
        raise SystemExit(f"sass_loops.py: no kernel matching '{args.kernel}' in {args.dump}")
    print(f"{args.kernel}: {len(instructions)} instructions, {instructions[-1][0] + 16} bytes")
    for address, text, _ in instructions:
        # A loop's back edge is a conditional branch; the unconditional ones back are mbarrier waits' retry paths,
        # placed after the kernel's code.
        target = re.search(r"\((\.L_x_\d+)\)", text) if text.startswith("@") and " BRA" in text else None
        start = labels.get(target.group(1)) if target else None
        if start is None or start >= address or address - start < args.min_bytes:
            continue
        print(f"loop {start:#x}..{address:#x} ({address - start + 16} bytes):")
        report([i for i in instructions if start <= i[0] <= address], args.top)


if __name__ == "__main__":
    main()
