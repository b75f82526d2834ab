"""Scheduler lanes through a real grpcio client (issue 13): latest-wins prompts
(`Prompt.supersede_pending`) on a stream and over unary `Predict`, and prompts answered
while a mask generation runs.

The server is the debug build with `MOBILESAM_TEST_DECODE_DELAY_MS` (a slow decoder, so
that prompts are still queued when the superseding one arrives; debug builds only) and one
decode worker. Same environment as test_grpc_client.py.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from test_grpc_client import (  # noqa: F401  (pb is a fixture)
    ANSWER_TIMEOUT_S,
    HEIGHT,
    WIDTH,
    Server,
    Session,
    _binary,
    _checkpoint,
    check_mask,
    make_png,
    pb,
)

DECODE_DELAY_MS = 400
ABORTED = 10

# pycocotools' C extension predates NumPy 2's `copy=` keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def server():
    srv = Server(
        _binary(), _checkpoint(),
        extra_args=("--decode-workers", "1"),
        extra_env={"MOBILESAM_TEST_DECODE_DELAY_MS": str(DECODE_DELAY_MS)},
    )
    yield srv
    assert srv.stop() == 0, "server did not exit cleanly:\n" + "\n".join(srv.logs[-20:])


@pytest.fixture()
def stub(pb, server):  # noqa: F811
    import grpc

    _, pb2_grpc = pb
    channel = grpc.insecure_channel(server.grpc_addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    grpc.channel_ready_future(channel).result(timeout=30)
    yield pb2_grpc.SegmentAnythingStub(channel)
    channel.close()


def click(pb2, request_id, x=30, supersede=False):
    return pb2.Prompt(request_id=request_id, supersede_pending=supersede,
                      objects=[pb2.ObjectPrompt(points=[pb2.Point(x=x, y=20, label=1)])])


def open_image(pb2, stub):
    s = Session(pb2, stub)
    s.send(set_image=pb2.SetImage(image=make_png(WIDTH, HEIGHT)))
    ready = s.recv()
    assert ready.WhichOneof("response") == "image_ready"
    return s, ready.image_ready.session_id


def test_supersede_answers_queued_prompts_aborted_in_order(pb, stub):  # noqa: F811
    """Prompts 1-4 are sent, then 5 with supersede_pending. With one slow decode worker
    at most prompt 1 has started when 5 arrives: the answers come in request order, the
    started ones with masks, every queued one ABORTED naming request 5, and 5 with masks.
    Another stream's queued prompt is left alone."""
    pb2, _ = pb
    a, session_id = open_image(pb2, stub)
    b = Session(pb2, stub)
    b.send(set_image=pb2.SetImage(session_id=session_id))
    assert b.recv().WhichOneof("response") == "image_ready"

    for request_id in range(1, 5):
        a.send(prompt=click(pb2, request_id, x=10 + request_id))
    b.send(prompt=click(pb2, 100))
    a.send(prompt=click(pb2, 5, x=40, supersede=True))

    answers = [a.recv() for _ in range(5)]
    kinds = [x.WhichOneof("response") for x in answers]
    ids = [x.masks.request_id if k == "masks" else x.error.request_id for x, k in zip(answers, kinds)]
    assert ids == [1, 2, 3, 4, 5], "answers come in request order"
    assert kinds[-1] == "masks"
    check_mask(answers[-1].masks.objects[0].masks[0], WIDTH, HEIGHT)
    started = kinds[:4].count("masks")
    assert started <= 1, f"one slow decode worker cannot have started {started} prompts"
    assert kinds[:4] == ["masks"] * started + ["error"] * (4 - started)
    for aborted in answers[started:4]:
        assert aborted.error.code == ABORTED
        assert aborted.error.message == "superseded by request 5"

    # The other stream's prompt was not superseded.
    other = b.recv()
    assert other.WhichOneof("response") == "masks" and other.masks.request_id == 100
    assert a.close() == [] and b.close() == []


def test_supersede_over_unary_predict_is_per_session(pb, stub):  # noqa: F811
    """Concurrent Predict calls on one session: the one with supersede_pending answers the
    session's queued calls ABORTED; a call on another session keeps its place."""
    import grpc

    pb2, _ = pb
    sessions = [stub.SetImage(pb2.SetImage(image=make_png(WIDTH, HEIGHT)), timeout=ANSWER_TIMEOUT_S).session_id
                for _ in range(2)]
    mine, theirs = sessions

    def predict(session_id, prompt):
        try:
            return stub.Predict(pb2.PredictRequest(session_id=session_id, prompt=prompt), timeout=ANSWER_TIMEOUT_S)
        except grpc.RpcError as e:
            return e

    with ThreadPoolExecutor(max_workers=6) as pool:
        early = [pool.submit(predict, mine, click(pb2, i)) for i in (1, 2, 3)]
        other = pool.submit(predict, theirs, click(pb2, 50))
        # The earlier calls reach the server's queue before the superseding one.
        time.sleep(0.2)
        latest = pool.submit(predict, mine, click(pb2, 9, supersede=True))
        early = [f.result() for f in early]
        latest, other = latest.result(), other.result()

    assert latest.request_id == 9 and latest.objects[0].masks
    assert other.request_id == 50, f"another session's call was superseded: {other}"
    aborted = [r for r in early if isinstance(r, grpc.RpcError)]
    answered = [r for r in early if not isinstance(r, grpc.RpcError)]
    assert len(answered) <= 1, "one slow decode worker cannot have started two calls"
    assert len(aborted) >= 2
    for e in aborted:
        assert e.code() == grpc.StatusCode.ABORTED
        assert e.details() == "superseded by request 9"


def test_prompts_and_encodes_are_answered_while_a_generation_runs(pb, stub):  # noqa: F811
    """A long GenerateMasks runs on one stream; on another, an image is encoded and
    prompts are answered before the generation sends anything (it has its own lane)."""
    import threading

    import grpc

    pb2, _ = pb
    g, _ = open_image(pb2, stub)
    # 64 x 64 points in batches of 16: hundreds of decoder batches, many seconds.
    params = pb2.GenerateParams(points_per_side=64, points_per_batch=16,
                                pred_iou_thresh=0, stability_score_thresh=0)
    g.send(generate_masks=pb2.GenerateMasks(request_id=7, params=params))
    generated = []

    def read_generation():
        try:
            generated.extend(g._answers)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.CANCELLED

    reader = threading.Thread(target=read_generation, daemon=True)
    reader.start()
    time.sleep(0.3)

    s, _ = open_image(pb2, stub)
    for request_id in (1, 2, 3):
        s.send(prompt=click(pb2, request_id))
        answer = s.recv()
        assert answer.WhichOneof("response") == "masks" and answer.masks.request_id == request_id
    assert s.close() == []
    assert generated == [], "the generation ended before the prompts were answered"

    # Cancelling the call stops the generation at its next batch.
    g._answers.cancel()
    reader.join(timeout=60)
    assert not reader.is_alive()
