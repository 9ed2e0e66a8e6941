"""Upload a release folder to the Hugging Face Hub as a dataset repository.

The token comes from the usual places (`HF_TOKEN`, `hf auth login`) and is never printed: errors
are reworded here, and any text that might quote it is scrubbed.
"""

from __future__ import annotations

import glob
import os

from cwm_bench.release import CHECKSUMS


class PublishError(RuntimeError):
    """Publishing cannot go ahead; the message says why."""


def release_files(release_dir: str) -> list[str]:
    """The files a release consists of (relative paths): README.md, the checksums, the data files."""
    data = sorted(os.path.relpath(p, release_dir)
                  for p in glob.glob(os.path.join(release_dir, "data", "**", "*.parquet"), recursive=True))
    return ["README.md", CHECKSUMS, *data]


def check_release(release_dir: str) -> list[str]:
    """Problems that make `release_dir` unfit to publish; [] when it is a complete, intact release:
    its card (README.md with `configs`) first, then everything `cwm-bench validate` checks (the full
    sha256 of every file, schema, rows), traces not replayed."""
    from cwm_bench.rows.reader import NotADatasetError, layout_of
    from cwm_bench.validate import card_problems, validate_dataset

    try:
        if layout_of(release_dir) != "release":
            return [f"{release_dir}: a collection folder; build a release with `cwm-bench release` first"]
    except NotADatasetError as exc:
        return [str(exc)]
    card = card_problems(release_dir)
    if card:
        return [f"{os.path.join(release_dir, str(p))}" for p in card]
    problems, _ = validate_dataset(release_dir, replay_count=0)
    return [str(p) for p in problems]


def publish(release_dir: str, repo_id: str, private: bool = False, dry_run: bool = False,
            token: str | None = None) -> list[str]:
    """Create (if needed) the dataset repo `repo_id` and upload the release; returns the uploaded paths.

    With dry_run, only checks the folder and returns what would be uploaded: no network, no token.
    """
    problems = check_release(release_dir)
    if problems:
        more = f" (+{len(problems) - 1} more; `cwm-bench validate {release_dir}` lists them)" \
            if len(problems) > 1 else ""
        raise PublishError(f"{release_dir} is not a publishable release: {problems[0]}{more}")
    files = release_files(release_dir)
    if dry_run:
        return files

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        # delete_patterns: shards of an earlier, larger release would otherwise linger beside the new ones
        # and match the card's `data/records/train-*` globs.
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=release_dir, allow_patterns=files,
                          delete_patterns=["data/*"], commit_message=f"Release {os.path.basename(release_dir)}")
    except OfflineModeIsEnabled as exc:
        raise PublishError("cannot publish: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1); "
                           "unset it to upload") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise PublishError(f"upload to {repo_id} failed: {_scrub(str(exc), token)}") from None
    return files


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text
