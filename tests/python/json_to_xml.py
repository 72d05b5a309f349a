#!/usr/bin/env python3
"""Convert PMS JSON responses to the XML PMS sends for the same request.

Used to generate crates/plex/tests/fixtures/xml_from_json/ from the JSON fixtures, so that the
Rust XML extractor and python-plexapi (which only reads XML) can be checked against the same
data.

Rules, following what PMS itself does:
- every object becomes an element; its scalar fields become attributes (booleans as "1"/"0",
  numbers in decimal, null omitted), its object and list fields become child elements, in order;
- a field holding objects becomes elements named after the field (Media, Part, Stream, Location,
  Genre, Hub, SearchResult, Directory, ...), except `Metadata`, whose element name depends on the
  item type as in PMS XML: Video (movie, episode, clip), Track, Photo (a photo; a photo whose key
  ends in /children is a folder: Directory), Playlist, and Directory for everything else (show,
  season, artist, album, collection, ...);
- attribute values escape & < > " and encode CR, LF and TAB as character references (PMS writes
  `&#xD;&#xA;`), so they survive attribute-value normalisation.

Usage:
  json_to_xml.py IN.json OUT.xml          convert one file
  json_to_xml.py --dir JSON_DIR... OUT_DIR convert every *.json of the directories
  add --check to compare with the existing output instead of writing (exit 1 on a difference).
"""

import json
import os
import sys

VIDEO_TYPES = {"movie", "episode", "clip", "trailer"}


def metadata_tag(obj):
    t = obj.get("type")
    if t in VIDEO_TYPES:
        return "Video"
    if t == "track":
        return "Track"
    if t == "photo":
        return "Directory" if str(obj.get("key", "")).endswith("/children") else "Photo"
    if t == "playlist":
        return "Playlist"
    return "Directory"


def attr_value(v):
    if v is True:
        return "1"
    if v is False:
        return "0"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def escape_attr(s):
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#xD;")
        .replace("\n", "&#xA;")
        .replace("\t", "&#x9;")
    )


def element(tag, obj, out, depth):
    attrs = []
    children = []
    for k, v in obj.items():
        if v is None:
            continue
        if isinstance(v, dict):
            children.append((k, [v]))
        elif isinstance(v, list):
            objs = [x for x in v if isinstance(x, dict)]
            if len(objs) != len(v):
                raise ValueError(f"list of scalars in field {k!r} has no XML form")
            children.append((k, objs))
        else:
            attrs.append(f' {k}="{escape_attr(attr_value(v))}"')
    pad = "  " * depth
    head = f"{pad}<{tag}{''.join(attrs)}"
    if not children:
        out.append(head + " />\n")
        return
    out.append(head + ">\n")
    for k, objs in children:
        for child in objs:
            child_tag = metadata_tag(child) if k == "Metadata" else k
            element(child_tag, child, out, depth + 1)
    out.append(f"{pad}</{tag}>\n")


def convert(doc):
    if not isinstance(doc, dict) or not isinstance(doc.get("MediaContainer"), dict):
        raise ValueError("not a PMS response: no MediaContainer object")
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    element("MediaContainer", doc["MediaContainer"], out, 0)
    return "".join(out)


def convert_file(src, dst, check):
    with open(src, encoding="utf-8") as f:
        xml = convert(json.load(f))
    if check:
        try:
            with open(dst, encoding="utf-8") as f:
                same = f.read() == xml
        except FileNotFoundError:
            same = False
        if not same:
            print(f"{dst} is out of date (regenerate from {src})", file=sys.stderr)
        return same
    with open(dst, "w", encoding="utf-8", newline="\n") as f:
        f.write(xml)
    return True


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    ok = True
    if args and args[0] == "--dir":
        *dirs, out_dir = args[1:]
        if not check:
            os.makedirs(out_dir, exist_ok=True)
        for d in dirs:
            for name in sorted(os.listdir(d)):
                if name.endswith(".json"):
                    dst = os.path.join(out_dir, name[: -len(".json")] + ".xml")
                    ok &= convert_file(os.path.join(d, name), dst, check)
    elif len(args) == 2:
        ok = convert_file(args[0], args[1], check)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
