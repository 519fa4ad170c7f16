"""`data check`: what a careful reviewer asks of a data set before any model is trained on it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations

from medkd.data.prepared import PreparedData
from medkd.data.table import SPLITS

MAX_LISTED = 20  # examples listed per finding; the JSON report holds them all


@dataclass
class DataReport:
    origin: str
    classes: list[str]
    source_split_sizes: dict[str, int]
    split_sizes: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    imbalance_ratio: float
    patients: dict[str, int]
    patients_known: bool
    patient_overlap: list[dict]
    duplicates_across_splits: list[dict]
    duplicates_within_splits: int
    image_modes: dict[str, int]
    image_sizes: dict[str, dict[str, float]]
    bad_files: list[dict]
    carved: list[str]
    notes: list[str]
    warnings: list[str]
    leaks: list[str] = field(default_factory=list)
    decode_seconds: float = 0.0
    decode_cached: bool = False
    cache_folder: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_data(data: PreparedData, *, strict: bool = False) -> DataReport:
    """Report sizes, balance, patients, leaks, duplicates, image properties and bad files.

    A leak is an identical image in two splits, or a patient whose images of one source split ended up in
    two splits. Patient ids shared across the source's own splits are a warning, since sources (the
    Kermany test set among them) may number patients independently per split; `strict` makes them leaks.
    """
    samples, classes = data.samples, data.classes
    present = [s for s in SPLITS if (samples["split"] == s).any()]
    class_counts = {
        s: {c: int(((samples["split"] == s) & (samples["label"] == i)).sum()) for i, c in enumerate(classes)}
        for s in present
    }
    train_counts = [n for n in class_counts.get("train", {}).values() if n]
    leaks, warnings = [], list(data.source.warnings)

    overlap = []
    origin = samples["source_split"].fillna("train")
    for a, b in combinations(present, 2):
        in_a, in_b = samples["split"] == a, samples["split"] == b
        shared = set(samples.loc[in_a, "patient"]) & set(samples.loc[in_b, "patient"])
        # Shared by samples of one source split: the split made here put a patient on both sides.
        made_here = sorted(set().union(*(
            set(samples.loc[in_a & (origin == s), "patient"]) & set(samples.loc[in_b & (origin == s), "patient"])
            for s in origin.unique()
        )))
        from_source = sorted(shared - set(made_here))
        overlap.append({"splits": [a, b], "patients": len(shared), "made_here": len(made_here),
                        "from_source": len(from_source), "examples": (made_here + from_source)[:MAX_LISTED]})
        if made_here:
            leaks.append(f"{len(made_here)} patients were split between {a} and {b} (e.g. {', '.join(made_here[:5])})")
        if from_source and strict:
            leaks.append(f"{len(from_source)} patient ids appear in both {a} and {b} as the source split them "
                         f"(e.g. {', '.join(from_source[:5])})")
        elif from_source:
            warnings.append(
                f"{len(from_source)} patient ids appear in both {a} and {b} because the source's own splits share them "
                f"(e.g. {', '.join(from_source[:5])}); a source may number patients independently per split: "
                "check, and use --strict to count this as a leak"
            )

    hashed = samples[samples["content_hash"] != ""]
    per_hash = hashed.groupby("content_hash")["split"].agg(lambda s: sorted(set(s)))
    crossing = per_hash[per_hash.map(len) > 1]
    duplicates = []
    for digest, splits in crossing.items():
        refs = hashed.loc[hashed["content_hash"] == digest, "ref"].tolist()
        duplicates.append({"splits": splits, "refs": [data.source.reader.display(r) for r in refs]})
    if duplicates:
        leaks.append(f"{len(duplicates)} images occur, byte for byte, in more than one split")
    within = int(hashed.duplicated(["content_hash", "split"]).sum())

    sizes = {
        dim: {"min": float(samples[dim].min()), "median": float(samples[dim].median()),
              "max": float(samples[dim].max())}
        for dim in ("width", "height")
    }
    return DataReport(
        origin=data.source.origin,
        classes=classes,
        source_split_sizes={str(k): int(v)
                            for k, v in data.source.samples["source_split"].fillna("none").value_counts().items()},
        split_sizes={s: int((samples["split"] == s).sum()) for s in present},
        class_counts=class_counts,
        imbalance_ratio=(max(train_counts) / min(train_counts)) if train_counts else float("nan"),
        patients={s: int(samples.loc[samples["split"] == s, "patient"].nunique()) for s in present},
        patients_known=data.source.patients_known,
        patient_overlap=overlap,
        duplicates_across_splits=duplicates,
        duplicates_within_splits=within,
        image_modes={str(k): int(v) for k, v in samples["mode"].value_counts().items()},
        image_sizes=sizes,
        bad_files=data.skipped.to_dict("records"),
        carved=data.carved,
        notes=data.notes,
        warnings=warnings,
        leaks=leaks,
        decode_seconds=round(data.decoded.seconds, 2),
        decode_cached=data.decoded.reused,
        cache_folder=str(data.decoded.folder),
    )


def print_report(report: DataReport, console) -> None:
    """Show a DataReport as rich tables."""
    from rich.table import Table

    console.print(f"[bold]{report.origin}[/bold]  classes: {', '.join(report.classes)}")
    before = ", ".join(f"{k} {v:,}" for k, v in report.source_split_sizes.items())
    console.print(f"images as the source splits them: {before}")

    table = Table(title="splits used (after carving)", title_justify="left")
    for column in ("split", "images", "patients", *report.classes):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, size in report.split_sizes.items():
        carved = " (carved)" if split in report.carved else ""
        table.add_row(split + carved, f"{size:,}", f"{report.patients[split]:,}",
                      *(f"{n:,}" for n in report.class_counts[split].values()))
    console.print(table)
    console.print(f"class imbalance in train (largest / smallest class): {report.imbalance_ratio:.2f}")
    if not report.patients_known:
        console.print("[yellow]no patient ids in this source: splits are by image[/yellow]")

    overlap = Table(title="patient overlap between splits", title_justify="left")
    for column in ("splits", "split here", "shared by the source's splits"):
        overlap.add_column(column, justify="left" if column == "splits" else "right")
    for row in report.patient_overlap:
        here = f"[{'red' if row['made_here'] else 'green'}]{row['made_here']}[/]"
        source = f"[{'yellow' if row['from_source'] else 'green'}]{row['from_source']}[/]"
        overlap.add_row(" / ".join(row["splits"]), here, source)
    console.print(overlap)
    console.print(f"identical images across splits: {len(report.duplicates_across_splits)}; "
                  f"within a split: {report.duplicates_within_splits}")
    for row in report.duplicates_across_splits[:MAX_LISTED]:
        console.print(f"  [red]{' / '.join(row['splits'])}[/red]: {', '.join(row['refs'])}")

    modes = ", ".join(f"{mode} {n:,}" for mode, n in report.image_modes.items())
    dims = "; ".join(f"{dim} {v['min']:.0f}-{v['max']:.0f} (median {v['median']:.0f})"
                     for dim, v in report.image_sizes.items())
    console.print(f"original images: {modes}; {dims}")
    cache_state = "loaded from cache" if report.decode_cached else "decoded now"
    console.print(f"decode cache: {cache_state} in {report.decode_seconds:.1f} s ({report.cache_folder})")

    if report.bad_files:
        console.print(f"[yellow]{len(report.bad_files)} unreadable files skipped:[/yellow]")
        for row in report.bad_files[:MAX_LISTED]:
            console.print(f"  {row['ref']}: {row['problem']}")
        if len(report.bad_files) > MAX_LISTED:
            console.print(f"  ... and {len(report.bad_files) - MAX_LISTED} more (all in the --json report)")
    for note in report.notes:
        console.print(f"note: {note}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for leak in report.leaks:
        console.print(f"[bold red]LEAK:[/bold red] {leak}")
    if not report.leaks:
        console.print("[bold green]no leak between splits[/bold green]")
