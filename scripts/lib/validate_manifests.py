"""Validate Kubernetes manifests against the OpenAPI schemas bundled in kubernetes-validate.

Usage: python3 scripts/lib/validate_manifests.py --kubernetes-version 1.37 [--strict] FILE...
(scripts/validate-manifests.sh runs it from a venv with the pinned kubernetes-validate.)

Uses kubernetes-validate's library rather than its command line because the command line
passes what it cannot check: a kind or apiVersion with no schema (a typo, or `kind: List`,
which has none) is only a warning with exit status 0. Here every object of every YAML document
must have a schema and match it, and the items of a `kind: List` are checked one by one.
Prints one line per failure naming the file, the document, the object and the field; exit
status 1 if anything failed, 2 on bad usage.
"""

import argparse
import re
import sys

import jsonschema
import yaml
from kubernetes_validate import utils
from referencing import Registry, Resource

# libyaml's loader when PyYAML has it (the manylinux wheels do): the full thesis render holds
# tens of thousands of documents, and the pure-Python loader alone takes minutes over them.
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Validators:
    """kubernetes-validate's `utils.validate`, with one compiled validator per schema.

    `utils.validate` re-reads and re-parses the multi-megabyte `_definitions.json` for every
    object (about 75 ms each): 40k objects would take most of an hour. The schema lookup and the
    errors are the library's; only the loading is done once per (kind, apiVersion).
    """

    def __init__(self, desired_version, strict):
        if utils.major_minor(desired_version) > utils.latest_version():
            raise utils.VersionNotSupportedError(version=utils.major_minor(desired_version))
        self.desired = desired_version
        # The newest bundled schema that is not newer than the version asked for.
        self.version = [
            v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(desired_version)
        ][-1]
        self.schema_dir = f"v{self.version}-local" + ("-strict" if strict else "")
        self.registry = (
            Resource.from_contents(
                utils.schema_contents(f"kubernetes-json-schema/{self.schema_dir}/_definitions.json", desired_version)
            )
            @ Registry()
        )
        self.cache = {}

    def validate(self, obj):
        """Raise utils.ValidationError or utils.SchemaNotFoundError as `utils.validate` does."""
        key = (obj["kind"], obj["apiVersion"])
        validator = self.cache.get(key)
        if validator is None:
            # rbac.authorization.k8s.io/v1 -> rbac-v1, as kubernetes-validate names its files.
            api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
            name = f"kubernetes-json-schema/{self.schema_dir}/{obj['kind'].lower()}-{api_version}.json"
            try:
                schema = utils.schema_contents(name, self.desired)
            except FileNotFoundError:
                raise utils.SchemaNotFoundError(
                    version=utils.major_minor(self.desired), kind=obj["kind"], api_version=obj["apiVersion"]
                ) from None
            registry = Resource.from_contents(schema) @ self.registry
            validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
            self.cache[key] = validator
        try:
            validator.validate(obj)
        except jsonschema.ValidationError as err:
            raise utils.ValidationError(err, version=utils.major_minor(self.version)) from None


def objects(document, where):
    """Yield (where, object) for a document, expanding `kind: List` items recursively."""
    if not isinstance(document, dict):
        raise ValueError(f"{where}: not a mapping but {type(document).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str):
            raise ValueError(f"{where}: no {key}")
    if document["kind"] == "List":
        items = document.get("items")
        if not isinstance(items, list):
            raise ValueError(f"{where}: kind List without an items list")
        for index, item in enumerate(items):
            yield from objects(item, f"{where} items[{index}]")
    else:
        yield where, document


def name_of(obj):
    """kind/name (or kind/generateName*) of an object, for messages."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = metadata.get("name") or (metadata.get("generateName", "?") + "*")
    return f"{obj['kind']}/{name}"


def check_file(path, validators):
    """Return (objects validated, list of failure messages) for one file."""
    try:
        with open(path, encoding="utf-8") as f:
            documents = list(yaml.load_all(f, Loader=YamlLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return 0, [f"{path}: cannot read YAML: {err}"]
    failures, count = [], 0
    for index, document in enumerate(documents):
        if document is None:  # an empty document, e.g. after a trailing ---
            continue
        try:
            found = list(objects(document, f"document {index}"))
        except ValueError as err:
            failures.append(f"{path}: {err}")
            continue
        for where, obj in found:
            count += 1
            try:
                validators.validate(obj)
            except utils.ValidationError as err:
                field = ".".join(str(p) for p in err.path) or "(top level)"
                failures.append(f"{path}: {where} {name_of(obj)}: {field}: {err.message}")
            except utils.SchemaNotFoundError as err:
                failures.append(f"{path}: {where} {name_of(obj)}: {err.message}")
            except Exception as err:  # noqa: BLE001 - a broken object must still name its file
                failures.append(f"{path}: {where} {name_of(obj)}: cannot validate: {err!r}")
    if count == 0 and not failures:
        failures.append(f"{path}: no Kubernetes object in it")
    return count, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", required=True, help="e.g. 1.37")
    parser.add_argument("--strict", action="store_true", help="reject fields the schema does not know")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    bundled = list(dict.fromkeys(utils.major_minor(v) for v in utils.all_versions()))
    if utils.major_minor(args.kubernetes_version) not in bundled:
        print(
            f"error: kubernetes-validate bundles schemas for {', '.join(bundled)},"
            f" not {args.kubernetes_version}",
            file=sys.stderr,
        )
        return 2
    validators = Validators(args.kubernetes_version, args.strict)
    total, failed = 0, []
    for path in args.files:
        count, failures = check_file(path, validators)
        total += count
        failed.extend(failures)
    for failure in failed:
        print(f"error: {failure}", file=sys.stderr)
    mode = "strict" if args.strict else "lenient"
    print(
        f"validate-manifests: {total} objects in {len(args.files)} files against Kubernetes"
        f" {args.kubernetes_version} ({mode}): {len(failed)} failures"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
