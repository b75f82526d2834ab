from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbeddingSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBEDDING_SOURCE_ENCODED: _ClassVar[EmbeddingSource]
    EMBEDDING_SOURCE_LOCAL_CACHE: _ClassVar[EmbeddingSource]
    EMBEDDING_SOURCE_STORE: _ClassVar[EmbeddingSource]

class TrackState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_STATE_UNSPECIFIED: _ClassVar[TrackState]
    TRACK_STATE_TRACKED: _ClassVar[TrackState]
    TRACK_STATE_LOST: _ClassVar[TrackState]
    TRACK_STATE_OCCLUDED: _ClassVar[TrackState]
EMBEDDING_SOURCE_ENCODED: EmbeddingSource
EMBEDDING_SOURCE_LOCAL_CACHE: EmbeddingSource
EMBEDDING_SOURCE_STORE: EmbeddingSource
TRACK_STATE_UNSPECIFIED: TrackState
TRACK_STATE_TRACKED: TrackState
TRACK_STATE_LOST: TrackState
TRACK_STATE_OCCLUDED: TrackState

class SegmentRequest(_message.Message):
    __slots__ = ("set_image", "prompt", "generate_masks", "untrack")
    SET_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    GENERATE_MASKS_FIELD_NUMBER: _ClassVar[int]
    UNTRACK_FIELD_NUMBER: _ClassVar[int]
    set_image: SetImage
    prompt: Prompt
    generate_masks: GenerateMasks
    untrack: Untrack
    def __init__(self, set_image: _Optional[_Union[SetImage, _Mapping]] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ..., generate_masks: _Optional[_Union[GenerateMasks, _Mapping]] = ..., untrack: _Optional[_Union[Untrack, _Mapping]] = ...) -> None: ...

class SetImage(_message.Message):
    __slots__ = ("image", "session_id", "image_sha256", "frame_index", "prefetch")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    session_id: str
    image_sha256: str
    frame_index: int
    prefetch: bool
    def __init__(self, image: _Optional[bytes] = ..., session_id: _Optional[str] = ..., image_sha256: _Optional[str] = ..., frame_index: _Optional[int] = ..., prefetch: _Optional[bool] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("request_id", "objects", "multimask_output", "return_low_res_logits", "supersede_pending", "track", "return_polygons")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    MULTIMASK_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_LOW_RES_LOGITS_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDE_PENDING_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    RETURN_POLYGONS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    objects: _containers.RepeatedCompositeFieldContainer[ObjectPrompt]
    multimask_output: bool
    return_low_res_logits: bool
    supersede_pending: bool
    track: bool
    return_polygons: bool
    def __init__(self, request_id: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[ObjectPrompt, _Mapping]]] = ..., multimask_output: _Optional[bool] = ..., return_low_res_logits: _Optional[bool] = ..., supersede_pending: _Optional[bool] = ..., track: _Optional[bool] = ..., return_polygons: _Optional[bool] = ...) -> None: ...

class ObjectPrompt(_message.Message):
    __slots__ = ("points", "box", "mask_input", "object_id")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    MASK_INPUT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    box: Box
    mask_input: bytes
    object_id: int
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., mask_input: _Optional[bytes] = ..., object_id: _Optional[int] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y", "label")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    label: int
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., label: _Optional[int] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("image_ready", "masks", "error", "generated_mask", "generate_summary")
    IMAGE_READY_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GENERATED_MASK_FIELD_NUMBER: _ClassVar[int]
    GENERATE_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    image_ready: ImageReady
    masks: Masks
    error: Error
    generated_mask: GeneratedMask
    generate_summary: GenerateSummary
    def __init__(self, image_ready: _Optional[_Union[ImageReady, _Mapping]] = ..., masks: _Optional[_Union[Masks, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., generated_mask: _Optional[_Union[GeneratedMask, _Mapping]] = ..., generate_summary: _Optional[_Union[GenerateSummary, _Mapping]] = ...) -> None: ...

class ImageReady(_message.Message):
    __slots__ = ("session_id", "width", "height", "encode_ms", "source", "image_sha256", "tracked", "prefetched", "frame_index")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    TRACKED_FIELD_NUMBER: _ClassVar[int]
    PREFETCHED_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    width: int
    height: int
    encode_ms: float
    source: EmbeddingSource
    image_sha256: str
    tracked: Masks
    prefetched: bool
    frame_index: int
    def __init__(self, session_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., encode_ms: _Optional[float] = ..., source: _Optional[_Union[EmbeddingSource, str]] = ..., image_sha256: _Optional[str] = ..., tracked: _Optional[_Union[Masks, _Mapping]] = ..., prefetched: _Optional[bool] = ..., frame_index: _Optional[int] = ...) -> None: ...

class Masks(_message.Message):
    __slots__ = ("request_id", "objects", "decode_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    objects: _containers.RepeatedCompositeFieldContainer[ObjectMasks]
    decode_ms: float
    def __init__(self, request_id: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[ObjectMasks, _Mapping]]] = ..., decode_ms: _Optional[float] = ...) -> None: ...

class ObjectMasks(_message.Message):
    __slots__ = ("masks", "object_id", "state")
    MASKS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    masks: _containers.RepeatedCompositeFieldContainer[Mask]
    object_id: int
    state: TrackState
    def __init__(self, masks: _Optional[_Iterable[_Union[Mask, _Mapping]]] = ..., object_id: _Optional[int] = ..., state: _Optional[_Union[TrackState, str]] = ...) -> None: ...

class Mask(_message.Message):
    __slots__ = ("score", "area", "bbox", "rle", "low_res_logits", "stability_score", "polygons")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    RLE_FIELD_NUMBER: _ClassVar[int]
    LOW_RES_LOGITS_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    POLYGONS_FIELD_NUMBER: _ClassVar[int]
    score: float
    area: int
    bbox: Box
    rle: Rle
    low_res_logits: bytes
    stability_score: float
    polygons: _containers.RepeatedCompositeFieldContainer[Polygon]
    def __init__(self, score: _Optional[float] = ..., area: _Optional[int] = ..., bbox: _Optional[_Union[Box, _Mapping]] = ..., rle: _Optional[_Union[Rle, _Mapping]] = ..., low_res_logits: _Optional[bytes] = ..., stability_score: _Optional[float] = ..., polygons: _Optional[_Iterable[_Union[Polygon, _Mapping]]] = ...) -> None: ...

class Polygon(_message.Message):
    __slots__ = ("points", "hole")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    HOLE_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedScalarFieldContainer[float]
    hole: bool
    def __init__(self, points: _Optional[_Iterable[float]] = ..., hole: _Optional[bool] = ...) -> None: ...

class Rle(_message.Message):
    __slots__ = ("size", "counts")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    counts: str
    def __init__(self, size: _Optional[_Iterable[int]] = ..., counts: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("request_id", "code", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    code: int
    message: str
    def __init__(self, request_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "parameters", "checkpoint_bytes", "device", "image_size", "family", "memory_tracking")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TRACKING_FIELD_NUMBER: _ClassVar[int]
    name: str
    parameters: int
    checkpoint_bytes: int
    device: str
    image_size: int
    family: str
    memory_tracking: bool
    def __init__(self, name: _Optional[str] = ..., parameters: _Optional[int] = ..., checkpoint_bytes: _Optional[int] = ..., device: _Optional[str] = ..., image_size: _Optional[int] = ..., family: _Optional[str] = ..., memory_tracking: _Optional[bool] = ...) -> None: ...

class GenerateParams(_message.Message):
    __slots__ = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh", "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area")
    POINTS_PER_SIDE_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_BATCH_FIELD_NUMBER: _ClassVar[int]
    PRED_IOU_THRESH_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_THRESH_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BOX_NMS_THRESH_FIELD_NUMBER: _ClassVar[int]
    CROP_N_LAYERS_FIELD_NUMBER: _ClassVar[int]
    CROP_NMS_THRESH_FIELD_NUMBER: _ClassVar[int]
    CROP_OVERLAP_RATIO_FIELD_NUMBER: _ClassVar[int]
    CROP_N_POINTS_DOWNSCALE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_MASK_REGION_AREA_FIELD_NUMBER: _ClassVar[int]
    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float
    box_nms_thresh: float
    crop_n_layers: int
    crop_nms_thresh: float
    crop_overlap_ratio: float
    crop_n_points_downscale_factor: int
    min_mask_region_area: int
    def __init__(self, points_per_side: _Optional[int] = ..., points_per_batch: _Optional[int] = ..., pred_iou_thresh: _Optional[float] = ..., stability_score_thresh: _Optional[float] = ..., stability_score_offset: _Optional[float] = ..., box_nms_thresh: _Optional[float] = ..., crop_n_layers: _Optional[int] = ..., crop_nms_thresh: _Optional[float] = ..., crop_overlap_ratio: _Optional[float] = ..., crop_n_points_downscale_factor: _Optional[int] = ..., min_mask_region_area: _Optional[int] = ...) -> None: ...

class GenerateMasks(_message.Message):
    __slots__ = ("request_id", "params")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    params: GenerateParams
    def __init__(self, request_id: _Optional[int] = ..., params: _Optional[_Union[GenerateParams, _Mapping]] = ...) -> None: ...

class GenerateMasksRequest(_message.Message):
    __slots__ = ("image", "session_id", "params")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    session_id: str
    params: GenerateParams
    def __init__(self, image: _Optional[bytes] = ..., session_id: _Optional[str] = ..., params: _Optional[_Union[GenerateParams, _Mapping]] = ...) -> None: ...

class GenerateMasksResponse(_message.Message):
    __slots__ = ("mask", "summary")
    MASK_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    mask: GeneratedMask
    summary: GenerateSummary
    def __init__(self, mask: _Optional[_Union[GeneratedMask, _Mapping]] = ..., summary: _Optional[_Union[GenerateSummary, _Mapping]] = ...) -> None: ...

class GeneratedMask(_message.Message):
    __slots__ = ("request_id", "mask", "stability_score", "point", "crop_box")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    CROP_BOX_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    mask: Mask
    stability_score: float
    point: Point
    crop_box: Box
    def __init__(self, request_id: _Optional[int] = ..., mask: _Optional[_Union[Mask, _Mapping]] = ..., stability_score: _Optional[float] = ..., point: _Optional[_Union[Point, _Mapping]] = ..., crop_box: _Optional[_Union[Box, _Mapping]] = ...) -> None: ...

class GenerateSummary(_message.Message):
    __slots__ = ("request_id", "mask_count", "width", "height", "encode_ms", "generate_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATE_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    mask_count: int
    width: int
    height: int
    encode_ms: float
    generate_ms: float
    def __init__(self, request_id: _Optional[int] = ..., mask_count: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., encode_ms: _Optional[float] = ..., generate_ms: _Optional[float] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("session_id", "prompt")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    prompt: Prompt
    def __init__(self, session_id: _Optional[str] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("closed",)
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    closed: bool
    def __init__(self, closed: _Optional[bool] = ...) -> None: ...

class Untrack(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, object_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class UntrackRequest(_message.Message):
    __slots__ = ("session_id", "untrack")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UNTRACK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    untrack: Untrack
    def __init__(self, session_id: _Optional[str] = ..., untrack: _Optional[_Union[Untrack, _Mapping]] = ...) -> None: ...

class UntrackResponse(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, object_ids: _Optional[_Iterable[int]] = ...) -> None: ...
