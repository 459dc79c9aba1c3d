"""Release formats: our layout, the authors' (upstream) layout, validation, images,
fingerprints and export between layouts. ``load_dataset`` reads either layout.

The public names below are those the rest of the project imports from
``mmscale_core.data``; each lives in the module of its concept.
"""

from mmscale_core.data.cli import format_summary, format_warning_report, register
from mmscale_core.data.dataset import Dataset, build_frame, dataset_fingerprint
from mmscale_core.data.export import export_dataset
from mmscale_core.data.images import (
    MAX_IMAGE_SIDE, ImageLoader, KeyedImage, as_pil, check_image_files, index_images, resize_max_side,
)
from mmscale_core.data.layouts import LAYOUTS, detect_layout, load_dataset
from mmscale_core.data.ours import SCENARIO_FILES, load_ours, read_records, write_dataset
from mmscale_core.data.problems import (
    DatasetError, DataWarning, NotInRelease, Problem, format_warnings, has_field, require_fields,
)
from mmscale_core.data.records import check_record, validate_records
from mmscale_core.data.schema import (
    DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DERIVED_COLUMNS, FIELDS, GIVEN_FIELDS, IMAGE_DIR, IMAGE_SOURCES,
    IMAGE_SUFFIXES, MODALITIES, NORMBANK_LABELS, OPTIONAL_FIELDS, ORIGINS, QC_FLAGS, RATING_RANGE, REQUIRED_FIELDS,
    SPLITS, majority_modality, split_by_image,
)
from mmscale_core.data.upstream import FLAT_FILE, is_upstream, load_upstream, write_upstream


__all__ = [
    "DEFAULT_SPLIT_SEED", "DEFAULT_TEST_FRACTION", "DERIVED_COLUMNS", "FIELDS", "FLAT_FILE", "GIVEN_FIELDS",
    "IMAGE_DIR", "IMAGE_SOURCES", "IMAGE_SUFFIXES", "LAYOUTS", "MODALITIES", "NORMBANK_LABELS", "OPTIONAL_FIELDS",
    "ORIGINS", "QC_FLAGS", "RATING_RANGE", "REQUIRED_FIELDS", "SCENARIO_FILES", "SPLITS", "DataWarning", "Dataset",
    "DatasetError", "ImageLoader", "KeyedImage", "MAX_IMAGE_SIDE", "NotInRelease", "Problem", "as_pil", "build_frame", "check_image_files", "check_record",
    "dataset_fingerprint", "detect_layout", "export_dataset", "format_summary", "format_warning_report",
    "format_warnings", "has_field", "index_images", "is_upstream", "load_dataset", "load_ours", "load_upstream",
    "majority_modality", "read_records", "register", "require_fields", "resize_max_side", "split_by_image", "validate_records",
    "write_dataset", "write_upstream",
]
