"""ClientApp handlers: one user's device. Private parameters stay in ``context.state``.

``query.info`` tells the server which user this node holds; ``train`` evaluates the received model
(when asked) and trains it locally; ``evaluate`` only evaluates. Replies carry exactly the shared
parameters and metrics; under secure aggregation the update leaves masked (``client_app.secure``).
"""

from __future__ import annotations

import time

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client_app import secure
from strategies import protocol as p
from strategies.records import to_record

# The model code (torch, the dataset, GFMFR's fusion) is imported inside the handlers: in a
# deployment every message starts a fresh ClientApp process, and the three SecAgg+ key and unmask
# exchanges of a secure round are answered by Flower's mod alone, so they skip that import
# (seconds per message, the bulk of a small secure round).
app = ClientApp(mods=[secure.secure_aggregation_mod])


@app.query("info")
def info(msg: Message, context: Context) -> Message:
    from client_app.session import Session

    session = Session.open(context)
    record = MetricRecord({p.USER_ID: session.user, "num-users": session.split.n_users,
                           "num-partitions": int(context.node_config.get("num-partitions", 0))})
    return Message(RecordDict({p.METRICS: record}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    from client_app.session import Session
    from client_app.state import save_private
    from client_app.training import train_local

    session = Session.open(context)
    model = session.model(msg.content)
    config = msg.content[p.CONFIG]
    metrics = {p.USER_ID: session.user}
    tic = time.perf_counter()
    rnd = int(config[p.SERVER_ROUND])
    teacher = session.teacher(msg.content, rnd)
    if config.get(p.DO_EVALUATE, False):
        metrics.update(session.evaluate(model, msg.content))
        metrics[p.EVAL_SECONDS] = time.perf_counter() - tic
    kd_weight = session.kd_weight()
    tic = time.perf_counter()
    result = train_local(model, session.view, session.rng(rnd), epochs=session.cfg.local_epochs,
                         batch_size=session.cfg.batch_size, neg_per_pos=session.cfg.neg_per_pos,
                         server_round=rnd, num_rounds=session.cfg.num_server_rounds,
                         teacher=teacher, kd_weight=kd_weight,
                         lr_scale=session.cfg.lr_scale_at(rnd),
                         resample_every_epoch=session.cfg.neg_resample == "epoch")
    save_private(context, session.user, model.private_arrays(), kd_weight.ema, rnd,
                 session.cfg.client_state_dir, session.run_key)
    metrics.update({p.NUM_EXAMPLES: result.num_examples, p.TRAIN_LOSS: result.loss,
                    p.KD_LOSS: result.kd_loss, p.KD_WEIGHT: result.kd_weight,
                    p.TRAIN_SECONDS: time.perf_counter() - tic})
    if secure.requested(msg):  # the SecAgg+ mod masks this reply's update
        return Message(session.secure_reply(model, result.rows, metrics), reply_to=msg)
    return Message(RecordDict({p.SHARED: to_record(session.upload(model, result.rows, rnd)),
                               p.METRICS: MetricRecord(metrics)}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    from client_app.session import Session

    session = Session.open(context)
    model = session.model(msg.content)
    tic = time.perf_counter()
    metrics = {p.USER_ID: session.user,
               **session.evaluate(model, msg.content)}
    metrics[p.EVAL_SECONDS] = time.perf_counter() - tic
    return Message(RecordDict({p.METRICS: MetricRecord(metrics)}), reply_to=msg)

