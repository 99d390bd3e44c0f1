"""Published numbers of the five papers, as data: one paper table per paper, ours placed beside.

Every number is copied from the paper named in its ``Paper.citation``, from the table named in
its block's ``source`` (e.g. GCNet, Table 2); the tables print that source beside the numbers.
Values are kept as the strings the paper prints, so the tables show the paper's precision; None
is a cell the paper leaves empty ("-").
Every row of each paper table is kept, in the paper's order: rows of methods this benchmark runs
name our run name(s); comparison rows of other groups' methods (hand-crafted features, Kaggle
leaderboard, ...) have no run name and print as "reference only". Rows a method of ours fills but
the paper has no row for (the supervised baseline where a paper has none, ablations such as
caf_fixed_margin) say so in their label.

A paper row is one ``R(...)`` line: ``R(paper label, "v1 v2 ...", backbone=...)``. Which of our
run names fill it is declared with the method, in its class's ``published_rows`` ({paper row
label: run names}, methods/<name>.py), read here from the method registry: when several are
named, the first one that has runs supplies the numbers (the table says which). ``backbone``
restricts ours to runs on that backbone (papers that report R18 and AlexNet rows); runs of the
same method on another backbone get an extra "ours only" row.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

R18, ALEX = "resnet18", "alexnet_reduced"   # our backbone names for the papers' "R18" / "AL"
#: how the papers name the backbones of their R18 / AL rows
PAPER_BACKBONE = {R18: "ResNet18", ALEX: "AlexNet"}
#: the papers' protocols, as runs.protocol_label names ours: official train/test splits, and
#: AFEW-VA's 5:1 cross-validation (6 subject-group folds)
OFFICIAL, AFEWVA_CV = "official split", "group_kfold, 6 folds"


@dataclass(frozen=True)
class Col:
    label: str            # as the paper heads it
    metric: str           # our metric key in metrics.json (or a derived one, e.g. mean_ccc)
    task: str             # "classification" | "va": which runs supply it
    scale: float = 1.0    # ours * scale = paper units (accuracy 0..1 -> %)
    digits: int = 3       # decimals for ours


@functools.cache
def declared_rows() -> dict[str, tuple[str, ...]]:
    """{paper row label: run names} of every registered method class's ``published_rows``
    (imports the method registry, hence torch, on first use only)."""
    from ferbench.methods.registry import declared, get_method, method_names

    rows: dict[str, tuple[str, ...]] = {}
    for name in method_names():
        for label, runs in declared(get_method(name), "published_rows", {}).items():
            if rows.get(label, tuple(runs)) != tuple(runs):
                raise ValueError(f"published row {label!r}: run names {rows[label]} and {tuple(runs)} "
                                 f"(method {name!r}) both declared")
            rows[label] = tuple(runs)
    return rows


@dataclass(frozen=True)
class Row:
    label: str
    given: tuple[str, ...] | None   # our run names given here; None: the methods' declaration
    published: tuple[str | None, ...]
    backbone: str | None = None

    @property
    def ours(self) -> tuple[str, ...]:
        """Our run names that fill this row (empty: a reference-only row)."""
        return self.given if self.given is not None else declared_rows().get(self.label, ())


@dataclass(frozen=True)
class Block:
    title: str
    dataset: str                  # our dataset name
    source: str                   # which table of which paper
    columns: tuple[Col, ...]
    rows: tuple[Row, ...]
    num_classes: int | None = None  # classification runs must have this many classes
    note: str = ""
    # the paper's setting, for the comparability rule (tables.why_not_comparable): its backbone
    # as our backbone name and as the paper names it (a row's own ``backbone`` wins), and its
    # input side in pixels; None where the paper does not say (not checked)
    backbone: str | None = None
    backbone_label: str = ""
    input_px: int | None = None
    protocol: str | None = None   # as runs.protocol_label names it, e.g. "kfold, 10 folds"

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row.published) != len(self.columns):
                raise ValueError(f"{self.title}: row {row.label!r} has {len(row.published)} "
                                 f"values for {len(self.columns)} columns")


@dataclass(frozen=True)
class Paper:
    key: str                      # output file stem: paper_000 ...
    title: str
    citation: str
    blocks: tuple[Block, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    short: str = ""               # the name readers know it by: "GCNet (Kim et al.)"


def R(label: str, values: str, backbone: str | None = None) -> Row:
    """One paper row: values are whitespace-separated as printed; '-' marks an empty cell."""
    cells = tuple(None if v in ("-", "—") else v for v in values.split())
    return Row(label, None, cells, backbone)


def baseline_row(n_cols: int) -> Row:
    """Every table needs the supervised baseline; where the paper has none, ours stand alone."""
    return Row("Supervised baseline (benchmark row, not in the paper)", None, (None,) * n_cols)


def fixed_margin_row(n_cols: int) -> Row:
    """CAF's adaptive-margin ablation on the AV task: the paper reports it on metric learning only."""
    return Row("CAF with a fixed margin (benchmark ablation, not in the paper)", None, (None,) * n_cols)


def _acc(label: str = "Accuracy (%)", digits: int = 2) -> Col:
    return Col(label, "accuracy", "classification", 100.0, digits)


def _va_cols(*stats: str, digits: int = 3) -> tuple[Col, ...]:
    names = {"rmse": "RMSE", "pcc": "PCC", "ccc": "CCC", "sagr": "SAGR"}
    return tuple(Col(f"{names[s]} ({d[0].upper()})", f"{d}_{s}", "va", 1.0, digits)
                 for s in stats for d in ("valence", "arousal"))


# ----------------------------------------------------------------- Triplet sequences (Garg et al.)
_P000 = Paper(
    key="paper_000",
    short="Triplet sequences (Garg et al.)",
    title="Triplet sequences (Garg et al.): triplet (contrastive) pretraining on expression "
          "sequences",
    citation="B. Garg, K. Kim, S. Ranjan. From Video to Images: Contrastive Pretraining for "
             "Emotion Recognition from Single Image. AAAI 2022 student abstract.",
    blocks=(Block(
        title="FER-2013, top-1 accuracy (PrivateTest)",
        dataset="fer2013", num_classes=7,
        source="Garg et al., Table 1 (middle and last blocks)",
        columns=(_acc("Top-1 acc (%)"),),
        rows=(
            R("MAXIM MILAKOV (Kaggle leaderboard)", "68.82"),
            R("RADU + MARIUS + CRISTI (Ionescu and Grozea 2013; Kaggle)", "67.48"),
            R("InceptionV1-full_FT (no contrastive pretraining)", "67.73"),
            R("InceptionV1-VGGFace2-full_FT", "67.92"),
            R("InceptionV1-VGGFace2-FC_only", "48.86"),
            R("CT512_1-full_FT (Method 1)", "68.76"),
            R("CT512_2-full_FT (Method 1 then 2)", "69.15"),
            R("CT512_1-FC_only (Method 1)", "41.96"),
            R("CT512_2-FC_only (Method 1 then 2)", "42.21"),
        ),
        backbone="inception_v1", backbone_label="InceptionV1", protocol=OFFICIAL,
        note="Paper backbone InceptionV1. Top block: Kaggle leaderboard entries; middle: "
             "InceptionV1 without contrastive pretraining; last: contrastive pretraining.",
    ),),
)

# ---------------------------------------------------------------------------- SSL-FER (Shu et al.)
_P001_COLS = (
    Col("F1 (%)", "macro_f1", "classification", 100.0, 1),
    Col("Acc (%)", "accuracy", "classification", 100.0, 1),
    Col("CCC (V)", "valence_ccc", "va", 1.0, 3),
    Col("RMSE (V)", "valence_rmse", "va", 1.0, 3),
    Col("CCC (A)", "arousal_ccc", "va", 1.0, 3),
    Col("RMSE (A)", "arousal_rmse", "va", 1.0, 3),
)
_P001 = Paper(
    key="paper_001",
    short="SSL-FER (Shu et al.)",
    title="SSL-FER (Shu et al.): self-supervised contrastive learning revisited (TimeAug, HardNeg, "
          "FaceSwap, MaskFN)",
    citation="Y. Shu, X. Gu, G.-Z. Yang, B. Lo. Revisiting Self-Supervised Contrastive Learning "
             "for Facial Expression Recognition. BMVC 2022 (arXiv:2210.03853).",
    blocks=(Block(
        title="AffectNet: expression (8 classes, official validation set) and valence/arousal",
        dataset="affectnet", num_classes=8,
        source="Shu et al., BMVC 2022 poster, table \"Results on Expression Classification and "
               "Valence & Arousal recognition\" (EXPR F1/Acc, Valence and Arousal CCC/RMSE)",
        columns=_P001_COLS,
        rows=(
            R("Supervised (ImageNet)",
              "56.7 56.6 0.563 0.462 0.480 0.376"),
            R("BYOL (VoxCeleb1)", "56.3 56.4 0.560 0.460 0.462 0.386"),
            R("MoCo-v2 (VoxCeleb1)", "56.8 56.8 0.570 0.454 0.486 0.378"),
            R("SimCLR (VoxCeleb1)", "57.5 57.7 0.594 0.431 0.451 0.387"),
            R("CycleFace (VoxCeleb1,2)", "48.8 49.7 0.534 0.492 0.436 0.383"),
            R("(a) TimeAug", "57.8 57.9 0.583 0.448 0.500 0.374"),
            R("(b) TimeAug + HardNeg",
              "58.1 58.3 0.594 0.437 0.500 0.373"),
            R("(c) TimeAug + HardNeg + CutMix", "- - - - - -"),
            R("(d) TimeAug + FaceSwap + MaskFN", "- - - - - -"),
            R("(e) TimeAug + HardNeg + FaceSwap",
              "58.8 58.9 0.601 0.429 0.514 0.367"),
            R("(f) TimeAug + HardNeg + MaskFN",
              "58.9 58.9 0.578 0.448 0.493 0.370"),
            R("(g) TimeAug + HardNeg + FaceSwap + MaskFN",
              "59.3 59.3 0.595 0.435 0.502 0.372"),
        ),
        backbone="resnet50", backbone_label="ResNet-50", protocol=OFFICIAL,
        note="Paper: ResNet-50 pretrained on VoxCeleb1 face tracks, full fine-tune.",
    ),),
    notes=("Rows (a)-(g) are the poster's strategy combinations, read from its check marks; the "
           "numbers of rows (c) (CutMix in place of FaceSwap) and (d) are not in the transcribed "
           "table, so their published cells are empty.",),
)

# -------------------------------------------------------------------------------- CAF (Kim & Song)
_AFEWVA_COLS = _va_cols("rmse", "sagr", "pcc", "ccc")
_P002 = Paper(
    key="paper_002",
    short="CAF (Kim & Song)",
    title="CAF (Kim & Song): contrastive adversarial learning",
    citation="D. H. Kim, B. C. Song. Contrastive Adversarial Learning for Person Independent "
             "Facial Emotion Recognition. AAAI 2021.",
    blocks=(
        Block(
            title="AffectNet valence/arousal",
            dataset="affectnet",
            source="Kim & Song (CAF), quantitative results on AffectNet", protocol=OFFICIAL,
            columns=_va_cols("rmse", "pcc", "ccc", digits=4),
            rows=(
                R("Mollahosseini, Hasani, and Mahoor 2017 (AlexNet)",
                  "0.37 0.41 0.66 0.54 0.60 0.34"),
                R("Jang, Gunes, and Patras 2019 (SSD w/ VGG16)",
                  "0.44 0.39 0.58 0.50 0.57 0.47"),
                R("Kollias et al. 2018 (VGG16)", "0.37 0.39 0.66 0.55 0.62 0.54"),
                R("Barros, Parisi, and Wermter 2019 (AlexNet)", "- - - - 0.67 0.38"),
                R("Kossaifi et al. 2020 (ResNet18)", "0.35 0.32 0.71 0.63 0.71 0.63"),
                R("Hasani, Negi, and Mahoor 2020 (ResNeXt50)",
                  "0.2668 0.2482 0.78 0.86 0.74 0.85"),
                R("CAF (ResNet18)", "0.2186 0.1873 0.86 0.85 0.83 0.84", backbone=R18),
                R("CAF (AlexNet, tuned)", "0.2216 0.1916 0.81 0.86 0.80 0.85",
                  backbone=ALEX),
                fixed_margin_row(6),
                baseline_row(6),
            ),
        ),
        Block(
            title="AFEW-VA (5:1 cross-validation)",
            dataset="afewva",
            source="CAF rows of AVCE (Kim & Song, ECCV 2022), Table 1",
            columns=_AFEWVA_COLS, input_px=224, protocol=AFEWVA_CV,
            rows=(
                R("CAF (R18)", "0.17 0.18 0.68 0.87 0.67 0.60 0.59 0.54", backbone=R18),
                R("CAF (AL)", "0.20 0.20 0.66 0.83 0.67 0.63 0.58 0.57", backbone=ALEX),
                fixed_margin_row(8),
                baseline_row(8),
            ),
        ),
    ),
    notes=("The public CAF evaluation script computes its \"RMSE\" with nn.MSELoss() (no square "
           "root) averaged over batches of 16: legacy metrics with legacy_rmse='batch_mse' and "
           "batch_size=16 reproduce that number.",),
)

# ------------------------------------------------------------------------------ GCNet (Kim et al.)
def _gcnet_block(title: str, dataset: str, classes: int, table: str, values: str,
                 references: tuple[tuple[str, str], ...]) -> Block:
    baseline, s0r0, s1r0, s0r1, s1r1 = values.split()
    return Block(
        title=title, dataset=dataset, num_classes=classes,
        source=f"Kim et al. (GCNet), {table}",
        columns=(_acc(),), backbone="cnn3", backbone_label="3-conv CNN", input_px=64,
        protocol="kfold, 10 folds",
        rows=(
            *(R(label, value) for label, value in references),
            R("CNN (baseline)", baseline),
            R("GCNet S0R0", s0r0),
            R("GCNet S1R0", s1r0),
            R("GCNet S0R1", s0r1),
            R("GCNet S1R1", s1r1),
        ),
    )


_P003 = Paper(
    key="paper_003",
    short="GCNet (Kim et al.)",
    title="GCNet (Kim et al.): generative-contrastive networks",
    citation="Y. Kim, B. Yoo, Y. Kwak, C. Choi, J. Kim. Deep Generative-Contrastive Networks for "
             "Facial Expression Recognition. arXiv:1703.07140.",
    blocks=(
        _gcnet_block("CK+, 7 expressions, 10-fold subject-independent", "ckplus", 7, "Table 2",
                     "96.94 97.08 97.83 97.53 97.93",
                     (("LBP-TOP [27]", "88.99"), ("HOG 3D [15]", "91.44"), ("MSR [23]", "91.4"),
                      ("TMS (4-fold) [12]", "91.89"), ("STM-ExpLet [19]", "94.19"),
                      ("DTAGN-Joint [13]", "97.25"), ("3D-CNN [18]", "85.9"),
                      ("3D-CNN-DAP [18]", "92.4"))),
        _gcnet_block("CK+, 8 expressions (with neutral), 10-fold", "ckplus", 8, "Table 3",
                     "95.47 95.74 96.75 96.50 97.28",
                     (("AURF [16]", "92.22"), ("AUDB [17]", "93.70"),
                      ("Zero-bias CNN+AD [14]", "96.4"))),
        _gcnet_block("MMI, 6 expressions, 10-fold", "mmi", 6, "Table 4",
                     "77.68 76.20 78.86 77.00 81.53",
                     (("LBP-TOP [27]", "59.51"), ("HOG 3D [15]", "60.89"), ("ITBN [25]", "59.7"),
                      ("CSPL [29]", "73.53"), ("STM-ExpLet [19]", "75.12"),
                      ("DTAGN-Joint [13]", "70.24"), ("3D-CNN [18]", "53.2"),
                      ("3D-CNN-DAP [18]", "63.4"))),
        _gcnet_block("Oulu-CASIA VIS, 6 expressions, 10-fold", "oulu", 6, "Table 5",
                     "83.96 84.65 86.39 85.83 86.11",
                     (("LBP-TOP [27]", "68.13"), ("HOG 3D [15]", "70.63"), ("AdaLBP [26]", "73.54"),
                      ("Atlases [9]", "75.52"), ("STM-ExpLet [19]", "74.59"),
                      ("DTAGN-Joint [13]", "81.46"))),
    ),
    notes=("Table 3 prints its last row as \"GCNet S0R0\" a second time; read here as S1R1 = "
           "97.28, the row S1R1 holds in Tables 2, 4 and 5.",
           "The CNN baseline row is our cnn_baseline method when it was run, else supervised.",),
)

# ------------------------------------------------------------------------------- AVCE (Kim & Song)
_P004 = Paper(
    key="paper_004",
    short="AVCE (Kim & Song)",
    title="AVCE (Kim & Song): emotion-aware multi-view contrastive learning",
    citation="D. H. Kim, B. C. Song. Emotion-aware Multi-view Contrastive Learning for Facial "
             "Emotion Recognition. ECCV 2022.",
    blocks=(
        Block(
            title="AFEW-VA (5:1 cross-validation)",
            dataset="afewva",
            source="Kim & Song (AVCE), Table 1", input_px=224, protocol=AFEWVA_CV,
            columns=_AFEWVA_COLS,
            rows=(
                R("Static: Kossaifi et al. [24]", "0.27 0.23 - - 0.41 0.45 - -"),
                R("Static: Mitenkova et al. [30]", "0.40 0.41 - - 0.33 0.42 0.33 0.40"),
                R("Static: Kossaifi et al. [23]",
                  "0.24 0.24 0.64 0.77 0.55 0.57 0.55 0.52"),
                R("CAF (R18)", "0.17 0.18 0.68 0.87 0.67 0.60 0.59 0.54", backbone=R18),
                R("CAF (AL)", "0.20 0.20 0.66 0.83 0.67 0.63 0.58 0.57", backbone=ALEX),
                R("AVCE (R18)", "0.156 0.144 0.783 0.876 0.651 0.727 0.619 0.707",
                  backbone=R18),
                R("AVCE (AL)", "0.162 0.170 0.790 0.834 0.730 0.686 0.629 0.622",
                  backbone=ALEX),
                R("Temporal: Kollias et al. [21]", "- - - - 0.51 0.58 0.52 0.56"),
                R("Temporal: Kossaifi et al. [23]-scratch",
                  "0.28 0.19 0.53 0.75 0.12 0.23 0.11 0.15"),
                R("Temporal: Kossaifi et al. [23]-trans.",
                  "0.20 0.21 0.67 0.79 0.64 0.62 0.57 0.56"),
                baseline_row(8),
            ),
        ),
        Block(
            title="Aff-Wild (sampled train set)",
            dataset="affwild",
            source="Kim & Song (AVCE), Table 2", input_px=224,
            columns=_AFEWVA_COLS,
            rows=(
                R("Hasani et al. [13]", "0.27 0.36 0.57 0.74 0.44 0.26 0.36 0.19"),
                R("Hasani et al. [14]", "0.26 0.31 0.77 0.75 0.42 0.40 0.37 0.31"),
                R("Deng et al. [8] (Aff-Wild test set, ResNet50)",
                  "- - - - - - 0.58 0.52"),
                R("CAF (R18)", "0.22 0.20 0.70 0.76 0.57 0.57 0.55 0.56", backbone=R18),
                R("CAF (AL)", "0.24 0.21 0.68 0.78 0.55 0.57 0.54 0.56", backbone=ALEX),
                R("AVCE (R18)", "0.148 0.152 0.798 0.78 0.600 0.57 0.552 -",
                  backbone=R18),
                R("AVCE (AL)", "0.154 0.154 0.849 0.795 0.713 0.632 0.682 0.594",
                  backbone=ALEX),
                baseline_row(8),
            ),
        ),
        Block(
            title="Aff-Wild2 validation set, CCC",
            dataset="affwild2",
            source="Kim & Song (AVCE), Table 3", input_px=224, protocol=OFFICIAL,
            columns=(*_va_cols("ccc"), Col("Mean CCC", "mean_ccc", "va", 1.0, 3)),
            rows=(
                R("ConvGRU [5]", "0.398 0.503 0.450"),
                R("Self-Attention [50]", "0.419 0.505 0.462"),
                R("Sanchez et al. [42] (prior best)", "0.438 0.498 0.468"),
                R("AVCE (R18)", "0.484 0.513 0.499", backbone=R18),
                R("AVCE (AL)", "0.496 0.500 0.498", backbone=ALEX),
                baseline_row(3),
            ),
            note="The transcription of Table 3 available here is garbled; the V and A values "
                 "are placed so that each row's mean is the printed Mean (the text's 0.031 gap "
                 "between AVCE (R18) and Sanchez et al. agrees).",
        ),
        Block(
            title="Ablation on Aff-Wild, AVCE (AL): contrastive formula and similarity",
            dataset="affwild",
            source="Kim & Song (AVCE), Table 4", input_px=224, backbone=ALEX, backbone_label="AlexNet",
            columns=_va_cols("ccc"),
            rows=(
                R("InfoNCE in place of L_AVCE, similarity f", "0.637 0.546"),
                R("InfoNCE in place of L_AVCE, similarity f2", "0.651 0.550"),
                R("Barlow Twins in place of L_AVCE, similarity f", "0.653 0.566"),
                R("Barlow Twins in place of L_AVCE, similarity f2",
                  "0.656 0.554"),
                R("AVCE without L_dis", "0.642 0.548"),
                R("AVCE with f", "0.682 0.594"),
                R("AVCE with f1", "0.640 0.577"),
                R("AVCE with f2", "0.691 0.581"),
            ),
        ),
    ),
    notes=("The public AVCE evaluation averages per-batch RMSE over batches of 64 and counts a "
           "zero label as a SAGR miss: legacy metrics with batch_size=64 and sagr_variant='avce' "
           "reproduce it.",),
)

PAPERS: tuple[Paper, ...] = (_P000, _P001, _P002, _P003, _P004)
