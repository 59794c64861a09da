#!/usr/bin/env python3
"""Generate the embedded EC2 instance-type catalog, crates/catalog/data/us-west-2.json.

Run with the project's virtualenv (created by hack/install-test-tools.sh):

    .venv/bin/python hack/gen-catalog.py           # rewrite the committed data file
    .venv/bin/python hack/gen-catalog.py --check   # exit 1 with a diff summary if it is stale

Inputs (nothing is fetched from the network):
  * moto's packaged DescribeInstanceTypes data (moto/ec2/resources/instance_types.json.gz) and
    its us-west-2 DescribeInstanceTypeOfferings data by zone name and by zone ID
    (moto/ec2/resources/instance_type_offerings/availability-zone{,-id}/us-west-2.json.gz);
  * hack/data/on-demand-prices-us-east-1.csv: AWS public on-demand list prices (see its header).

Output: one JSON document, one instance type per line so diffs stay readable. It keeps only the
raw EC2 facts the catalog derives labels, capacity and overhead from; derivations happen in Rust.

Filtering mirrors upstream Karpenter's DescribeInstanceTypes filters: HVM virtualisation and an
x86_64 or arm64 architecture, and the type must be offered in at least one us-west-2 zone.

Prices
  * on-demand: the list price from the CSV when it has the type ("aws-on-demand-list"), else an
    ESTIMATE ("estimate"):
         vCPUs x the median listed USD per vCPU-hour of a reference family's non-metal sizes,
      where the reference family is the type's own family if any size of it is listed, else
      the listed family of the same category (the letters before the generation digit) with
      the fewest differing attribute letters, then the nearest generation (older first), e.g.
      c9g is priced like c8g, c8in like c6in, m8azn like m5zn. --explain prints the mapping.
  * spot: always an ESTIMATE. spot = on_demand x f(type, zone) where
      f = 0.25 + 0.25 * (first 4 bytes of SHA-256("<type>/<zone>") as big-endian u32) / 2^32,
    i.e. a stable pseudo-random discount between 50% and 75% that differs by zone like real spot
    prices do. Only for types whose usage classes include spot; given for every zone of the region
    (the catalog, like upstream, lists offerings in zones where a type is not offered as
    unavailable, and those still carry a price).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import gzip
import hashlib
import json
import os
import re
import statistics
import sys
from pathlib import Path

REGION = "us-west-2"
REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = REPO_ROOT / "crates" / "catalog" / "data" / f"{REGION}.json"
PRICES_CSV = REPO_ROOT / "hack" / "data" / "on-demand-prices-us-east-1.csv"
SUPPORTED_ARCHITECTURES = ("x86_64", "arm64")
USAGE_CLASSES = ("on-demand", "spot")

PRICE_LIST = "aws-on-demand-list"
PRICE_ESTIMATE = "estimate"


def moto_resources() -> Path:
    try:
        import moto  # noqa: PLC0415  (imported lazily so --help works without the venv)
    except ImportError:
        sys.exit("moto is not importable: run hack/install-test-tools.sh and use .venv/bin/python")
    return Path(moto.__file__).resolve().parent / "ec2" / "resources"


def moto_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version("moto")


def load_gz_json(path: Path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def zone_ids(by_name: list[dict], by_id: list[dict]) -> dict[str, str]:
    """Pairs each zone name with its zone ID.

    moto publishes offerings twice, once keyed by zone name and once by zone ID, from the same
    account view; the two files list identical instance-type sets per zone, so the pairing is
    the unique bijection between equal sets. Failing that loudly beats guessing.
    """
    names: dict[str, set[str]] = {}
    ids: dict[str, set[str]] = {}
    for offering in by_name:
        names.setdefault(offering["Location"], set()).add(offering["InstanceType"])
    for offering in by_id:
        ids.setdefault(offering["Location"], set()).add(offering["InstanceType"])
    pairs: dict[str, str] = {}
    for name, types in sorted(names.items()):
        matches = [zone_id for zone_id, id_types in ids.items() if id_types == types]
        if len(matches) != 1:
            sys.exit(f"cannot pair zone {name} with a zone ID (candidates: {matches})")
        pairs[name] = matches[0]
    if sorted(pairs.values()) != sorted(ids):
        sys.exit(f"zone names {sorted(pairs)} and zone IDs {sorted(ids)} do not pair up")
    return pairs


def load_list_prices() -> dict[str, float]:
    prices: dict[str, float] = {}
    with PRICES_CSV.open(encoding="utf-8") as handle:
        rows = csv.reader(line for line in handle if not line.startswith("#"))
        header = next(rows)
        if header != ["instance_type", "usd_per_hour"]:
            sys.exit(f"{PRICES_CSV}: unexpected header {header}")
        for row in rows:
            name, price = row[0], float(row[1])
            if price <= 0 or name in prices:
                sys.exit(f"{PRICES_CSV}: bad or duplicate row {row}")
            prices[name] = price
    return prices


def raw_record(info: dict, zones: list[str]) -> dict:
    """The subset of one DescribeInstanceTypes entry that the catalog derives from."""
    processor = info["ProcessorInfo"]
    network = info["NetworkInfo"]
    ebs = info.get("EbsInfo", {})
    record: dict = {
        "name": info["InstanceType"],
        "vcpus": info["VCpuInfo"]["DefaultVCpus"],
        "memory_mib": info["MemoryInfo"]["SizeInMiB"],
        "architectures": processor["SupportedArchitectures"],
        "cpu_manufacturer": processor.get("Manufacturer", ""),
    }
    if "SustainedClockSpeedInGhz" in processor:
        record["sustained_clock_ghz"] = processor["SustainedClockSpeedInGhz"]
    if info.get("Hypervisor"):
        record["hypervisor"] = info["Hypervisor"]
    record["bare_metal"] = bool(info.get("BareMetal", False))
    record["usage_classes"] = [c for c in info.get("SupportedUsageClasses", []) if c in USAGE_CLASSES]
    record["ebs_optimized_support"] = ebs.get("EbsOptimizedSupport", "unsupported")
    max_ebs = ebs.get("EbsOptimizedInfo", {}).get("MaximumBandwidthInMbps")
    if max_ebs is not None:
        record["ebs_max_bandwidth_mbps"] = max_ebs
    storage = info.get("InstanceStorageInfo")
    if storage:
        record["instance_storage"] = {
            "total_gb": storage["TotalSizeInGB"],
            "nvme_support": storage.get("NvmeSupport", "unsupported"),
        }
    gpus = info.get("GpuInfo", {}).get("Gpus", [])
    if gpus:
        record["gpus"] = [
            {
                "name": g["Name"],
                "manufacturer": g["Manufacturer"],
                "count": g["Count"],
                "memory_mib": g.get("MemoryInfo", {}).get("SizeInMiB", 0),
            }
            for g in gpus
        ]
    accelerators = info.get("InferenceAcceleratorInfo", {}).get("Accelerators", [])
    if accelerators:
        record["inference_accelerators"] = [
            {"name": a["Name"], "manufacturer": a["Manufacturer"], "count": a["Count"]}
            for a in accelerators
        ]
    neuron = info.get("NeuronInfo", {}).get("NeuronDevices", [])
    if neuron:
        record["neuron_devices"] = [
            {"name": n["Name"], "count": n["Count"], "cores": n.get("CoreInfo", {}).get("Count", 0)}
            for n in neuron
        ]
    cards = []
    for card in sorted(network.get("NetworkCards", []), key=lambda c: c["NetworkCardIndex"]):
        entry = {"index": card["NetworkCardIndex"], "max_enis": card["MaximumNetworkInterfaces"]}
        if "BaselineBandwidthInGbps" in card:
            entry["baseline_gbps"] = card["BaselineBandwidthInGbps"]
        cards.append(entry)
    record["network"] = {
        "default_card_index": network.get("DefaultNetworkCardIndex", 0),
        "max_enis": network["MaximumNetworkInterfaces"],
        "ipv4_per_eni": network["Ipv4AddressesPerInterface"],
        "cards": cards,
        "efa_max_interfaces": network.get("EfaInfo", {}).get("MaximumEfaInterfaces", 0),
        "encryption_in_transit": bool(network.get("EncryptionInTransitSupported", False)),
        "performance": network.get("NetworkPerformance", ""),
    }
    record["zones"] = zones
    return record


FAMILY_PATTERN = re.compile(r"^([a-z]+?)([0-9]+)([a-z]*)(-.+)?$")


def family_parts(family: str) -> tuple[str, int, frozenset[str]] | None:
    """Splits a family like "c8in" or "p6-b300" into (category, generation, attribute tokens)."""
    match = FAMILY_PATTERN.match(family)
    if not match:
        return None
    category, generation, letters, suffix = match.groups()
    tokens = set(letters)
    if suffix:
        tokens.add(suffix)
    return category, int(generation), frozenset(tokens)


def family_rates(records: list[dict], prices: dict[str, float]) -> dict[str, float]:
    """Median listed USD per vCPU-hour of each family's non-metal sizes."""
    per_family: dict[str, list[float]] = {}
    for r in records:
        if r["name"] in prices and not r["bare_metal"]:
            per_family.setdefault(r["name"].split(".")[0], []).append(prices[r["name"]] / r["vcpus"])
    return {family: statistics.median(rates) for family, rates in per_family.items()}


def reference_family(family: str, rates: dict[str, float]) -> str | None:
    """The listed family an unlisted one is priced like: same category, fewest differing
    attribute tokens, then nearest generation, then the older generation, then by name."""
    target = family_parts(family)
    if target is None:
        return None
    category, generation, tokens = target
    candidates = []
    for other in rates:
        parts = family_parts(other)
        if parts is None or parts[0] != category:
            continue
        candidates.append((len(tokens ^ parts[2]), abs(generation - parts[1]), parts[1] > generation, other))
    return min(candidates)[3] if candidates else None


def estimate_on_demand(record: dict, rates: dict[str, float]) -> tuple[float, str]:
    family = record["name"].split(".")[0]
    reference = family if family in rates else reference_family(family, rates)
    if reference is None:
        reference_rate, reference = statistics.median(rates.values()), "all listed families"
    else:
        reference_rate = rates[reference]
    return reference_rate * record["vcpus"], reference


def spot_factor(instance_type: str, zone: str) -> float:
    digest = hashlib.sha256(f"{instance_type}/{zone}".encode()).digest()
    return 0.25 + 0.25 * int.from_bytes(digest[:4], "big") / 2**32


def build() -> tuple[str, dict]:
    resources = moto_resources()
    types = load_gz_json(resources / "instance_types.json.gz")
    offerings_dir = resources / "instance_type_offerings"
    by_name = load_gz_json(offerings_dir / "availability-zone" / f"{REGION}.json.gz")
    by_id = load_gz_json(offerings_dir / "availability-zone-id" / f"{REGION}.json.gz")
    zone_to_id = zone_ids(by_name, by_id)
    zones_of: dict[str, set[str]] = {}
    for offering in by_name:
        zones_of.setdefault(offering["InstanceType"], set()).add(offering["Location"])

    records = []
    for name in sorted(zones_of):
        info = types.get(name)
        if info is None:
            sys.exit(f"{name} is offered in {REGION} but missing from instance_types.json.gz")
        if "hvm" not in info.get("SupportedVirtualizationTypes", []):
            continue
        if not any(a in SUPPORTED_ARCHITECTURES for a in info["ProcessorInfo"]["SupportedArchitectures"]):
            continue
        records.append(raw_record(info, sorted(zones_of[name])))

    prices = load_list_prices()
    rates = family_rates(records, prices)
    stats: dict = {"types": len(records), "listed": 0, "estimated": 0, "estimated_like": {}}
    for record in records:
        name = record["name"]
        if name in prices:
            price, source = prices[name], PRICE_LIST
            stats["listed"] += 1
        else:
            price, reference = estimate_on_demand(record, rates)
            source = PRICE_ESTIMATE
            stats["estimated"] += 1
            stats["estimated_like"].setdefault(reference, []).append(name)
        record["on_demand_price"] = round(price, 6)
        record["on_demand_price_source"] = source
        if "spot" in record["usage_classes"]:
            record["spot_prices"] = {
                zone: round(record["on_demand_price"] * spot_factor(name, zone), 6) for zone in sorted(zone_to_id)
            }

    header = {
        "region": REGION,
        "source": {
            "instance_types": f"moto {moto_version()} packaged DescribeInstanceTypes and {REGION} offerings",
            "on_demand_prices": f"{PRICES_CSV.relative_to(REPO_ROOT)} (aws-on-demand-list); others estimated",
            "spot_prices": "estimate: on_demand x (0.25 + 0.25 x sha256('<type>/<zone>')[0..4] / 2^32)",
            "generator": "hack/gen-catalog.py",
        },
        "zones": [{"name": z, "zone_id": zone_to_id[z]} for z in sorted(zone_to_id)],
    }
    lines = ["{"]
    for key in ("region", "source", "zones"):
        lines.append(f"{json.dumps(key)}: {json.dumps(header[key], sort_keys=True, separators=(',', ':'))},")
    lines.append('"instance_types": [')
    body = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in records]
    lines.append(",\n".join(body))
    lines.append("]")
    lines.append("}")
    return "\n".join(lines) + "\n", stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    parser.add_argument("--explain", action="store_true", help="print counts and the price model")
    args = parser.parse_args()

    text, stats = build()
    json.loads(text)  # the hand-assembled layout must stay valid JSON
    if args.explain:
        print(json.dumps(stats, indent=2, sort_keys=True))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current == text:
            print(f"{OUTPUT.relative_to(REPO_ROOT)} is up to date ({stats['types']} instance types)")
            return 0
        diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), "committed", "generated", n=0, lineterm=""))
        changed = sum(1 for line in diff if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))
        print(f"{OUTPUT.relative_to(REPO_ROOT)} is STALE: {changed} changed lines. First differences:", file=sys.stderr)
        for line in diff[:20]:
            print(f"  {line[:200]}", file=sys.stderr)
        print("Regenerate with: .venv/bin/python hack/gen-catalog.py", file=sys.stderr)
        return 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUTPUT.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, OUTPUT)
    print(
        f"wrote {OUTPUT.relative_to(REPO_ROOT)}: {stats['types']} instance types, {len(text)} bytes, "
        f"{stats['listed']} listed on-demand prices, {stats['estimated']} estimated"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
