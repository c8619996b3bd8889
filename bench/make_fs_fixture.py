#!/usr/bin/env python3
"""Creates the filesystem benchmark fixture (idempotent):

  read/4k.txt        a 4 KiB text file
  list/              a directory of 1,000 files
  tree/              100,000 small text files in 1,000 directories (100 x 10), with 10
                     `needle-*.txt` files and the word NEEDLE in 10 files' contents
"""
import os
import sys

root = sys.argv[1]
marker = os.path.join(root, ".complete")
if os.path.exists(marker):
    sys.exit(0)

os.makedirs(os.path.join(root, "read"), exist_ok=True)
line = "The quick brown fox jumps over the lazy dog; MCP benchmark line.\n"  # 65 bytes
with open(os.path.join(root, "read", "4k.txt"), "w") as f:
    text = (line * 64)[:4096]
    f.write(text)

listing = os.path.join(root, "list")
os.makedirs(listing, exist_ok=True)
for i in range(1000):
    with open(os.path.join(listing, f"entry-{i:04}.txt"), "w") as f:
        f.write("x\n")

body = "".join(f"line {n}: lorem ipsum dolor sit amet\n" for n in range(20))
tree = os.path.join(root, "tree")
count = 0
for a in range(100):
    for b in range(10):
        d = os.path.join(tree, f"d{a:03}", f"s{b}")
        os.makedirs(d, exist_ok=True)
        for c in range(100):
            name = f"file-{c:03}.txt"
            content = body
            if c == 0 and b == 0 and a % 10 == 0:
                name = f"needle-{a:03}.txt"
            if c == 50 and b == 5 and a % 10 == 5:
                content = body + "the NEEDLE is here\n"
            with open(os.path.join(d, name), "w") as f:
                f.write(content)
            count += 1
assert count == 100_000, count
open(marker, "w").close()
