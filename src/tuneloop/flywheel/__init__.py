"""The flywheel: what users asked and how they rated it becomes training data, under the privacy
team's control from the first log line to the last model.

    enrich      request log + feedback -> a new dataset version (lineage: request ids)
    review      the queue of thumbs-down answers without a correction
    erasure     remove one data subject from logs, datasets, indexes; mark derived models
    retention   purge logs past their tier's retention period
    monitor     per-variant latency, errors and satisfaction against the SLO
    evidence    online evidence from the internal stage for `rollout promote`
"""
