"""Images that are not frontal chest radiographs, for training and measuring the input gate.

Everything comes from files that ship in installed packages or is generated here:

- DICOM test files of pydicom, pydicom-data (``data_store``) and deid-data: CT, MR, ultrasound, nuclear
  medicine, secondary captures, an extremity radiograph, photographs of cookies, a cat's thorax;
- photographs: scikit-learn's two sample images, scikit-image's ``skimage.data`` and matplotlib's sample data;
- generated: noise of several kinds, gradients, shapes, stripes/checkerboards, rendered text documents, and
  radiographs made unreadable (inverted, heavily cropped), ultrasound-like fans, "dead leaves" pictures (a
  standard stand-in for the statistics of natural photographs) and noise with radiograph-like 1/f spectra.

"Heavily cropped" (:data:`HEAVY_CROP_MAX_AREA`): the crop keeps at most 20 % of the radiograph's area (the
measured test crops keep 20-40 % of each side, 4-16 % of the area) -- at most part of one lung field. A crop
that keeps most of both lungs (80 % or more of each side) is still a chest radiograph and is trained as one
(the frontal class's zoom augmentation).

Each item carries a ``family`` so rates are reported per family; :func:`split_by_content` keeps identical
pictures (e.g. one CT slice stored in several transfer syntaxes) on one side of a train/test split.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WORDS = [
    "patient",
    "report",
    "chest",
    "radiograph",
    "findings",
    "impression",
    "lungs",
    "clear",
    "heart",
    "size",
    "normal",
    "the",
    "of",
    "and",
    "invoice",
    "total",
    "amount",
    "date",
    "signature",
    "page",
    "section",
    "table",
    "results",
    "figure",
    "analysis",
    "summary",
    "data",
    "method",
    "introduction",
    "conclusion",
    "reference",
    "name",
    "address",
    "phone",
    "email",
    "order",
    "item",
    "quantity",
    "price",
]
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
)


@dataclass
class Item:
    """One image (uint8 grayscale or RGB) with its family, a name saying where it came from and, for DICOM
    files, the file's Modality."""

    image: np.ndarray
    family: str
    name: str
    modality: str | None = None


def _size(rng: np.random.Generator) -> tuple[int, int]:
    h = int(rng.integers(160, 512))
    return h, int(np.clip(h * rng.uniform(0.7, 1.4), 120, 600))


def _noise(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    kind = rng.integers(6)
    if kind == 0:
        a = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (h, w))
    elif kind == 1:
        a = rng.uniform(0, 255, (h, w))
    elif kind == 2:
        a = np.where(rng.random((h, w)) < rng.uniform(0.05, 0.5), 255.0, rng.uniform(0, 120))
    elif kind == 3:
        a = cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), rng.uniform(2, 25))
        a = (a - a.min()) / (np.ptp(a) + 1e-6) * 255
    elif kind == 4:  # multi-scale "clouds"
        a = np.zeros((h, w))
        for s in (4, 8, 16, 32, 64):
            a += cv2.resize(rng.normal(0, 1, (s, s)), (w, h), interpolation=cv2.INTER_CUBIC) / s**0.5
        a = (a - a.min()) / (np.ptp(a) + 1e-6) * 255
    else:
        a = power_law_noise(h, w, rng.uniform(1.5, 3.5), rng)
    return np.clip(a, 0, 255).astype(np.uint8)


def power_law_noise(h: int, w: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power spectrum falls as 1/f^beta (radiographs and photographs lie near beta 2-3), 0-255."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spec[0, 0] = 0
    a = np.fft.irfft2(spec, s=(h, w))
    lo, hi = np.percentile(a, (1, 99))
    return np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255


def _ultrasound(rng: np.random.Generator) -> np.ndarray:
    """An ultrasound-like picture: a speckled fan (sector) on black, with a few bright labels."""
    h, w = _size(rng)
    a = np.zeros((h, w), np.float32)
    apex = (w * rng.uniform(0.35, 0.65), -h * rng.uniform(0.0, 0.15))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - apex[0], yy - apex[1])
    ang = np.degrees(np.arctan2(xx - apex[0], yy - apex[1]))
    half = rng.uniform(25, 50)
    r0, r1 = h * rng.uniform(0.05, 0.2), h * rng.uniform(0.75, 1.0)
    fan = (np.abs(ang) < half) & (r > r0) & (r < r1)
    speckle = rng.rayleigh(1.0, (h, w)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (0, 0), float(rng.uniform(0.6, 2.0)))
    tissue = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), float(rng.uniform(6, 25)))
    bright = 0.5 + 0.5 * np.tanh(tissue * rng.uniform(1, 4))
    img = speckle * bright * np.exp(-r / (r1 * rng.uniform(0.6, 2.0)))
    a[fan] = img[fan]
    a = a / (np.percentile(a[fan], 99.5) + 1e-6) * rng.uniform(150, 255)
    if rng.random() < 0.5:  # a dark cyst-like blob
        c = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.8) * h))
        cv2.ellipse(a, c, (int(rng.integers(8, 40)), int(rng.integers(8, 40))), 0, 0, 360, 5.0, -1)
        a[~fan] = 0
    a = np.clip(a, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):
        cv2.putText(
            a,
            " ".join(rng.choice(WORDS, 2)),
            (int(rng.integers(0, w // 2)), int(rng.integers(10, h))),
            cv2.FONT_HERSHEY_PLAIN,
            0.8,
            230,
            1,
        )
    return a


def _dead_leaves(rng: np.random.Generator) -> np.ndarray:
    """The "dead leaves" model: overlapping discs and boxes with power-law sizes, a stand-in for natural photographs."""
    h, w = _size(rng)
    a = np.full((h, w), float(rng.uniform(0, 255)), np.float32)
    rmin, rmax = 3.0, min(h, w) * rng.uniform(0.2, 0.6)
    for _ in range(int(rng.integers(300, 1200))):
        rad = 1.0 / (1.0 / rmin + rng.random() * (1.0 / rmax - 1.0 / rmin))  # density ~ r^-2
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.3:
            cv2.rectangle(
                a, c, (c[0] + int(rad), c[1] + int(rad * rng.uniform(0.3, 2))), float(rng.uniform(0, 255)), -1
            )
        else:
            cv2.circle(a, c, max(1, int(rad)), float(rng.uniform(0, 255)), -1)
    a = cv2.GaussianBlur(a, (0, 0), float(rng.uniform(0.3, 1.5)))
    return np.clip(a + rng.normal(0, rng.uniform(0, 8), a.shape), 0, 255).astype(np.uint8)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        ang = rng.uniform(0, np.pi)
        a = xx * np.cos(ang) + yy * np.sin(ang)
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a = np.hypot(yy - cy, xx - cx)
    a = (a - a.min()) / (np.ptp(a) + 1e-6)
    lo, hi = sorted(rng.uniform(0, 255, 2))
    return (lo + a * (hi - lo) + rng.normal(0, 2, a.shape)).clip(0, 255).astype(np.uint8)


def _shapes(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    a = np.full((h, w), rng.integers(0, 256), np.uint8)
    for _ in range(int(rng.integers(2, 25))):
        c = int(rng.integers(0, 256))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        k = rng.integers(4)
        if k == 0:
            cv2.rectangle(a, p1, p2, c, -1 if rng.random() < 0.6 else int(rng.integers(1, 6)))
        elif k == 1:
            cv2.circle(a, p1, int(rng.integers(5, max(6, min(h, w) // 3))), c, -1)
        elif k == 2:
            cv2.line(a, p1, p2, c, int(rng.integers(1, 8)))
        else:
            cv2.ellipse(
                a,
                p1,
                (int(rng.integers(5, w // 3)), int(rng.integers(5, h // 3))),
                float(rng.uniform(0, 180)),
                0,
                360,
                c,
                -1,
            )
    return a


def _pattern(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w]
    p = int(rng.integers(4, 48))
    if rng.random() < 0.5:
        a = ((xx // p + yy // p) % 2) * 255
    else:
        ang = rng.uniform(0, np.pi)
        a = (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / p) + 1) * 127.5
    return a.astype(np.uint8)


def _document(rng: np.random.Generator) -> np.ndarray:
    h = int(rng.integers(300, 700))
    w = int(h * rng.uniform(0.65, 0.85))
    bg, fg = (int(rng.integers(200, 256)), int(rng.integers(0, 80)))
    if rng.random() < 0.2:
        bg, fg = fg, bg
    a = np.full((h, w), bg, np.uint8)
    y = int(rng.integers(15, 50))
    font = FONTS[int(rng.integers(len(FONTS)))]
    scale = rng.uniform(0.35, 0.9)
    while y < h - 10:
        x = int(rng.integers(8, 30))
        line = " ".join(rng.choice(WORDS, int(rng.integers(2, 12))))
        cv2.putText(a, line, (x, y), font, scale, fg, 1 if scale < 0.7 else 2, cv2.LINE_AA)
        y += int(25 * scale + rng.integers(8, 30))
        if rng.random() < 0.1:
            cv2.rectangle(a, (x, y), (w - x, y + int(rng.integers(20, 80))), fg, 1)
            y += 90
    return a


GENERATORS = {
    "noise": _noise,
    "gradient": _gradient,
    "shapes": _shapes,
    "pattern": _pattern,
    "document": _document,
    "ultrasound_like": _ultrasound,
    "dead_leaves": _dead_leaves,
}

HEAVY_CROP_MAX_AREA = 0.2


def generated(n_per_family: int, seed: int) -> list[Item]:
    """``n_per_family`` generated images of each generated family."""
    rng = np.random.default_rng(seed)
    return [
        Item(fn(rng), fam, f"{fam}-{seed}-{i}") for fam, fn in GENERATORS.items() for i in range(n_per_family)
    ]


def spoiled_radiographs(images: list[np.ndarray], seed: int) -> list[Item]:
    """Each radiograph inverted (``inverted_cxr``) and heavily cropped to 20–40 % of each side (``cropped_cxr``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, im in enumerate(images):
        out.append(Item(255 - im, "inverted_cxr", f"inverted-{i}"))
        h, w = im.shape
        ch, cw = int(h * rng.uniform(0.2, 0.4)), int(w * rng.uniform(0.2, 0.4))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(Item(np.ascontiguousarray(im[y : y + ch, x : x + cw]), "cropped_cxr", f"crop-{i}"))
    return out


def heavy_crops(images: list[np.ndarray], n_per: int, seed: int) -> list[Item]:
    """``n_per`` heavy crops of each radiograph at several scales and aspect ratios (``cropped_cxr``).

    Each crop keeps 8-60 % of one side and at most :data:`HEAVY_CROP_MAX_AREA` of the area (so strips of one
    side of the chest are included, a crop keeping most of both lungs never is)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        for k in range(n_per):
            while True:
                fh, fw = rng.uniform(0.08, 0.6, 2)
                if fh * fw <= HEAVY_CROP_MAX_AREA and fh * h >= 24 and fw * w >= 24:
                    break
            ch, cw = int(h * fh), int(w * fw)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            out.append(
                Item(np.ascontiguousarray(im[y : y + ch, x : x + cw]), "cropped_cxr", f"hcrop-{i}-{k}")
            )
    return out


def dicom_to_uint8(ds) -> list[np.ndarray]:
    """Display images (uint8 gray or RGB) of a DICOM dataset: every frame, modality/VOI LUT, MONOCHROME1."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    arr = ds.pixel_array
    pi = str(getattr(ds, "PhotometricInterpretation", ""))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    color = arr.ndim == (4 if frames > 1 else 3) and arr.shape[-1] == 3
    seq = list(arr) if frames > 1 else [arr]
    out = []
    for f in seq:
        f = np.asarray(f)
        if not color:
            try:
                f = apply_voi_lut(apply_modality_lut(f, ds), ds)
            except Exception:  # broken LUTs in test files: fall back to percentile windowing
                f = f.astype(np.float64)
            f = f.astype(np.float64)
            lo, hi = np.percentile(f, (0.5, 99.5))
            f = np.clip((f - lo) / max(hi - lo, 1e-6), 0, 1)
            if pi == "MONOCHROME1":
                f = 1 - f
            out.append((f * 255).astype(np.uint8))
        else:
            f = f.astype(np.float64)
            if f.max() > 255:
                f = f / f.max() * 255
            out.append(f.clip(0, 255).astype(np.uint8))
    return out


def package_dicom_files() -> list[Path]:
    """DICOM files shipped by pydicom (test files), pydicom-data and deid-data, where installed."""
    roots = []
    for mod, sub in (("pydicom", "data/test_files"), ("data_store", "data"), ("deid_data", "data")):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        roots.append(Path(m.__file__).parent / sub)
    files = []
    for r in roots:
        files += [
            p
            for p in sorted(r.rglob("*"))
            if p.is_file() and p.suffix not in (".py", ".pyc", ".json", ".txt", ".md", ".gz")
        ]
    return files


def _is_chest_radiograph(ds) -> bool:
    body = str(getattr(ds, "BodyPartExamined", "")).upper()
    return (
        str(getattr(ds, "Modality", "")) in ("CR", "DX")
        and body == "CHEST"
        and "LAT" not in str(getattr(ds, "SeriesDescription", "")).upper()
        and "CAT" not in str(getattr(ds, "PatientName", "")).upper()
    )


def package_dicoms(max_frames: int = 4) -> tuple[list[Item], list[Item]]:
    """(non-CXR items, human chest radiograph items) from the packages' DICOM files.

    Frames of multi-frame files are spread evenly, at most ``max_frames``. A DX/CR chest radiograph of a
    human is returned on the CXR side (only pydicom-data's ``RG1`` here); the cat's lateral thorax
    (deid-data ``animals/cat.dcm``) is a non-CXR (``animal_radiograph``).
    """
    import pydicom

    neg, pos = [], []
    for p in package_dicom_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(p, force=True)
                if "PixelData" not in ds:
                    continue
                frames = dicom_to_uint8(ds)
        except Exception:  # many test files are deliberately broken; they are not images
            continue
        step = max(1, len(frames) // max_frames)
        modality = str(getattr(ds, "Modality", "") or "OT")
        family = "animal_radiograph" if "animals" in p.parts else f"dicom_{modality.lower()}"
        for k, f in enumerate(frames[::step][:max_frames]):
            item = Item(f, family, f"{p.parent.name}/{p.name}#{k}", str(getattr(ds, "Modality", "") or ""))
            (pos if _is_chest_radiograph(ds) else neg).append(item)
    return neg, pos


def photographs(which: str) -> list[Item]:
    """``"sklearn"`` (2 photos), ``"skimage"`` (its bundled ``skimage.data`` images) or ``"matplotlib"``."""
    out: list[Item] = []
    if which == "sklearn":
        from sklearn.datasets import load_sample_images

        for i, im in enumerate(load_sample_images().images):
            out.append(Item(np.asarray(im, np.uint8), "photo_sklearn", f"sklearn-{i}"))
    elif which == "skimage":
        import skimage.data as sd

        names = [
            "astronaut",
            "camera",
            "coins",
            "moon",
            "page",
            "text",
            "horse",
            "clock",
            "coffee",
            "chelsea",
            "rocket",
            "hubble_deep_field",
            "immunohistochemistry",
            "retina",
            "logo",
            "brick",
            "grass",
            "gravel",
            "checkerboard",
            "cell",
            "human_mitosis",
            "microaneurysms",
            "motorcycle_left",
            "colorwheel",
            "binary_blobs",
        ]
        for n in names:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    im = getattr(sd, n)()
            except Exception:  # images that need a download are skipped (no network)
                continue
            im = np.asarray(im)
            if im.dtype == bool:
                im = im.astype(np.uint8) * 255
            if im.dtype != np.uint8:
                im = (255 * (im - im.min()) / max(np.ptp(im), 1e-6)).astype(np.uint8)
            if im.ndim == 3 and im.shape[-1] == 4:
                im = im[..., :3]
            if im.ndim in (2, 3):
                out.append(Item(im, "photo_skimage", f"skimage-{n}"))
    elif which == "matplotlib":
        import matplotlib.cbook as cb

        for n in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
            try:
                im = cv2.imread(str(cb.get_sample_data(n, asfileobj=False)), cv2.IMREAD_COLOR)
            except Exception:
                continue
            if im is not None:
                out.append(Item(im[..., ::-1].copy(), "photo_matplotlib", f"matplotlib-{n}"))
    return out


def photo_crops(items: list[Item], n_per: int, seed: int, channels: bool = False) -> list[Item]:
    """Random crops (30–80 % of each side), rotations and flips of photographs; with ``channels`` colour
    crops become one colour channel or an inverted grey picture half of the time (other grey renderings)."""
    rng = np.random.default_rng(seed)
    out = []
    for it in items:
        h, w = it.image.shape[:2]
        if min(h, w) < 64:  # too small to crop (the gate's size rule refuses these anyway)
            continue
        for k in range(n_per):
            ch, cw = int(h * rng.uniform(0.3, 0.8)), int(w * rng.uniform(0.3, 0.8))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            c = np.ascontiguousarray(it.image[y : y + ch, x : x + cw])
            c = np.rot90(c, int(rng.integers(4))).copy()
            if channels and rng.random() < 0.5:
                g = c[..., int(rng.integers(3))] if c.ndim == 3 else c
                c = np.ascontiguousarray(255 - g if rng.random() < 0.5 else g)
            out.append(Item(c, it.family, f"{it.name}-crop{k}"))
    return out


def content_key(image: np.ndarray) -> str:
    """A key equal for the same picture stored differently (8×8 gray thumbnail, quantised)."""
    g = image if image.ndim == 2 else image[..., :3].mean(axis=2)
    t = cv2.resize(np.asarray(g, np.float32), (8, 8), interpolation=cv2.INTER_AREA)
    t = (t - t.mean()) / (t.std() + 1e-6)
    return hashlib.md5(np.round(t).astype(np.int8).tobytes() + bytes(image.shape[:2] != ())).hexdigest()


def _name_group(name: str) -> str:
    """Files that are one picture in several encodings share a stem prefix (``MR2_J2KI``, ``MR2_UNCR``)."""
    stem = name.split("/")[-1].split("#")[0]
    for sep in ("_", "-", "."):
        stem = stem.split(sep)[0]
    return stem.lower()


def split_by_content(items: list[Item], test_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(train, test) keeping same-content items (equal :func:`content_key` or file-name stem) on one side."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, it in enumerate(items):
        for key in (f"c:{content_key(it.image)}", f"n:{it.family}:{_name_group(it.name)}"):
            j = first.setdefault(key, i)
            parent[find(i)] = find(j)
    groups: dict[int, list[Item]] = {}
    for i, it in enumerate(items):
        groups.setdefault(find(i), []).append(it)
    train, test = [], []
    for members in groups.values():
        key = min(m.name for m in members)
        h = int(hashlib.md5(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (test if h < test_fraction else train).extend(members)
    return train, test
