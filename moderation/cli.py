"""``xclip-index moderate`` (wired into ``jobs.cli``): exit 0 done, 2 bad policy,
4 the index or its model cannot be used (the message says the fix)."""
from __future__ import annotations

EXIT_OK, EXIT_CONFIG, EXIT_OUTPUT = 0, 2, 4


def moderate_main(args, fail) -> int:
    from moderation.policy import PolicyError
    from moderation.recompute import ModerateError, moderate

    try:
        result = moderate(args.index, args.policy, review_out=args.review_out, run_id=args.run_id,
                          blocklist=args.blocklist, drop_blocklist=getattr(args, "drop_blocklist", False))
    except PolicyError as e:
        return fail(EXIT_CONFIG, str(e))
    except ModerateError as e:
        return fail(EXIT_OUTPUT, str(e))
    print(result.format())
    if result.kept:
        print(f"blocklist: kept the earlier known-bad matches of {result.kept} videos (--blocklist to match "
              "again, --drop-blocklist to drop them)")
    if result.unhashed:
        print(f"blocklist: {result.unhashed} ok videos have no stored frame hashes (index them with --blocklist)")
    if result.review_items is not None:
        print(f"review queue: {result.review_items} items -> {args.review_out}")
    return EXIT_OK
