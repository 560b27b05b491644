"""Render deploy/k8s/kustomization.yaml the way `kustomize build` would for what it
uses (a resource list and a namespace), without kubectl: the input of
`kubernetes-validate --strict` in `make deploy-check`.

    python deploy/render.py deploy/k8s > rendered.yaml

Any other kustomization field is an error here, so the check never validates less
than what `kubectl apply -k` would apply.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "namespace", "resources"}
# Kinds without a namespace: kustomize leaves them alone.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class RenderError(Exception):
    pass


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if not isinstance(kustomization, dict) or kustomization.get("kind") != "Kustomization":
        raise RenderError("kustomization.yaml: not a Kustomization")
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise RenderError(f"kustomization.yaml: unsupported fields {sorted(unknown)}")
    namespace = kustomization.get("namespace")
    documents: list[dict[str, Any]] = []
    for name in kustomization.get("resources") or []:
        path = directory / name
        if not path.is_file():
            raise RenderError(f"kustomization.yaml: resource {name} not found")
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise RenderError(f"{name}: a document is not a mapping")
            if namespace and doc.get("kind") not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = namespace
            documents.append(doc)
    return documents


def main(argv: list[str]) -> int:
    try:
        docs = render(Path(argv[1] if len(argv) > 1 else "deploy/k8s"))
    except (RenderError, OSError, yaml.YAMLError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
