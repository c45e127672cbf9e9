"""A synthetic image for the unpack benchmark: FILES small files spread over
directories of 100, BYTES_PER_FILE each (half random, half text, so it
compresses about as real software does), and busybox as /bin/true. Writes the plain layer tar and,
beside it, a docker-archive directory (manifest.json and config) that
oci_from_layer.py wraps as an OCI image.

Usage: synthetic_image.py FILES BYTES_PER_FILE OUT_DIR"""
import hashlib, io, json, os, random, sys, tarfile

files, size, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
rng = random.Random(42)
text = (b"the quick brown fox jumps over the lazy dog; " * (size // 45 + 1))
layer = os.path.join(out, "layer.tar")
with tarfile.open(layer, "w", format=tarfile.GNU_FORMAT) as t:
    # Something to run: busybox-static as /bin/true.
    t.add("/bin/busybox", "bin/busybox")
    link = tarfile.TarInfo("bin/true")
    link.type, link.linkname = tarfile.SYMTYPE, "busybox"
    t.addfile(link)
    for i in range(files):
        if i % 100 == 0:
            d = tarfile.TarInfo(f"data/d{i // 100:05d}")
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            t.addfile(d)
        half = size // 2
        data = rng.randbytes(half) + text[: size - half]
        info = tarfile.TarInfo(f"data/d{i // 100:05d}/f{i:06d}")
        info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
        t.addfile(info, io.BytesIO(data))

h = hashlib.sha256()
with open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "config": {"Cmd": ["/bin/true"]},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]}}).encode()
cd = hashlib.sha256(config).hexdigest()
open(os.path.join(out, cd + ".json"), "wb").write(config)
json.dump([{"Config": cd + ".json", "RepoTags": ["synthetic:1"], "Layers": ["layer.tar"]}],
          open(os.path.join(out, "manifest.json"), "w"))
