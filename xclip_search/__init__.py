"""Querying an index written by ``xclip-index run`` (LanceDB builder style; no Ray).

    import xclip_search
    idx = xclip_search.open_index("s3://bucket/index")
    hits = idx.search("a dog jumping into a lake").where("start_s > 10").limit(10).to_pandas()
    same = idx.similar(video_id).limit(5).to_list()           # video to video
    clips = idx.similar((video_id, 3)).limit(5).to_list()     # clip to clip

See ``xclip_search.index`` (opening), ``xclip_search.query`` (the builder),
``xclip_search.relabel`` (new labels from stored data) and ``xclip_store.indexes``.
"""
from xclip_search.index import Index, IndexError_, open_index
from xclip_search.query import Query

__all__ = ["Index", "IndexError_", "Query", "open_index"]
