"""The pipeline: one module per stage, in the order a photo goes through them (docs/architecture.md).

    scan.py      folder-per-class tree -> records (path, label, split, sha256)
    decode.py    a source -> the canvas views are cut from (through the one door, by the input contract)
    shard.py     one shard of work: sources -> canvases -> views -> embeddings, as arrays
    engines.py   where shards run (a local process pool; ray_engine.py: Ray Data)
    stores.py    where vectors go (the SQLite cache, Parquet shards)
    embed.py     files -> cached embeddings [N, V, D] (hash, look up, run the misses, commit)
    finetune.py  the training loop (fine-tuning the backbone end to end)

The verbs (train, evaluate, predict, export, embed, audit, serve, demo) sit a layer above and
call these; nothing here imports a verb.
"""
