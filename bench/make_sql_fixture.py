#!/usr/bin/env python3
"""Creates the SQL benchmark database (idempotent): one SQLite file with

  items(id INTEGER PRIMARY KEY, sku TEXT, name TEXT, category TEXT, price REAL,
        weight REAL, description TEXT)

holding 100,000 deterministic rows (ids 1..100000; about 150 bytes of text per row).
The file is written to a temporary name and renamed, so a half-written file is never used.
"""
import os
import random
import sqlite3
import sys

ROWS = 100_000
path = sys.argv[1]


def complete(p):
    if not os.path.exists(p):
        return False
    try:
        with sqlite3.connect(f"file:{p}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM items").fetchone()[0] == ROWS
    except sqlite3.Error:
        return False


if complete(path):
    sys.exit(0)

os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
tmp = path + ".tmp"
if os.path.exists(tmp):
    os.remove(tmp)
rng = random.Random(42)
categories = ["hardware", "software", "books", "garden", "kitchen", "toys", "sports", "office"]
words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
conn = sqlite3.connect(tmp)
conn.execute(
    "CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, name TEXT NOT NULL, "
    "category TEXT NOT NULL, price REAL NOT NULL, weight REAL, description TEXT)"
)
conn.executemany(
    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
    (
        (
            i,
            f"SKU-{i:08}",
            " ".join(rng.choice(words) for _ in range(3)).title(),
            rng.choice(categories),
            round(rng.uniform(0.5, 500.0), 2),
            round(rng.uniform(0.01, 25.0), 3),
            " ".join(rng.choice(words) for _ in range(12)),
        )
        for i in range(1, ROWS + 1)
    ),
)
conn.execute("CREATE INDEX items_category ON items(category)")
conn.commit()
conn.execute("VACUUM")
conn.close()
os.replace(tmp, path)
