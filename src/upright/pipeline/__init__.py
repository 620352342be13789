"""The pipeline: one module per stage, in the order a photo goes through them (docs/architecture.md).

    scan.py      folder-per-class tree -> records (path, label, split, sha256)
    decode.py    a source -> the canvas views are cut from (through the one door, by the input contract)
    shard.py     one shard of work: sources -> canvases -> views -> embeddings, as arrays
    engines.py   where shards run (a local process pool; ray_engine.py: Ray Data)
    stores.py    where vectors go (the SQLite cache, Parquet shards)
    embed.py     files -> cached embeddings [N, V, D] (hash, look up, run the misses, commit)
    fit.py       embeddings -> the linear head (l2 and test views chosen on the held-out photos)
    finetune.py  the training loop (fine-tuning the backbone end to end)
    package.py   the fitted head and its input contract -> the model folder (written atomically)

The verbs (train, evaluate, predict, export, embed, audit, serve, demo) sit a layer above and
call these; nothing here imports a verb.
"""
