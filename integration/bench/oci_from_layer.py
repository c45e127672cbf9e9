"""Wrap a compressed layer as an OCI image layout and an oci-archive tar, with
the config of the docker-archive it came from (diff_ids unchanged).

Usage: oci_from_layer.py LAYER DOCKER_DIR LAYOUT ARCHIVE [gzip|zstd]"""
import hashlib, json, os, sys, tarfile

layer_gz, docker_dir, layout, archive = sys.argv[1:5]
compression = sys.argv[5] if len(sys.argv) > 5 else "gzip"
os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
manifest = json.load(open(os.path.join(docker_dir, "manifest.json")))[0]
config = open(os.path.join(docker_dir, manifest["Config"]), "rb").read()
blob = open(layer_gz, "rb").read()

def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}

layer = dict(put(blob), mediaType="application/vnd.oci.image.layer.v1.tar+" + compression)
cfg = dict(put(config), mediaType="application/vnd.oci.image.config.v1+json")
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": [layer]}).encode()
md = dict(put(m), mediaType="application/vnd.oci.image.manifest.v1+json",
          annotations={"org.opencontainers.image.ref.name": "bench"})
json.dump({"schemaVersion": 2, "manifests": [md]}, open(os.path.join(layout, "index.json"), "w"))
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
with tarfile.open(archive, "w") as t:
    for root, _, files in os.walk(layout):
        for name in files:
            p = os.path.join(root, name)
            t.add(p, arcname=os.path.relpath(p, layout))
