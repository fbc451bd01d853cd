import os
import shutil

import pytest
from conftest import L40S_BF16, VLLM, VLLM_LORA

from nimrunbook.errors import CacheIncompleteError, InputError
from nimrunbook.standin import catalog
from nimrunbook.store import object_key, plan_publish

H100 = "e7dbd9a8ce6270d2ec649a0fecbcae9b5336566113525f20aee3809ba5e63856"


def test_plan_has_one_object_per_distinct_file(standin_manifest, downloaded_cache):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16, VLLM_LORA])
    expected_uris = {
        uri
        for pid in (VLLM, L40S_BF16, VLLM_LORA)
        for _, uri in next(p for p in catalog.PROFILES_1_8_5 if p.id == pid).files()
    }
    assert {o.key for o in plan.objects} == {object_key(u) for u in expected_uris}
    assert len(plan.objects) == len(catalog.HF_FILES) + len(catalog.ENGINE_FILES)
    config = next(o for o in plan.objects if o.uri.endswith(f"{catalog.HF_TAG}?file=config.json"))
    assert sorted(config.profiles) == sorted([VLLM, L40S_BF16, VLLM_LORA])
    weights = next(o for o in plan.objects if o.uri.endswith("model.safetensors"))
    assert weights.size == 262144 and "/blobs/" in str(weights.source) and not weights.source.is_symlink()
    assert plan.total_bytes == sum(o.size for o in plan.objects)


def test_profile_not_downloaded_names_files_and_the_download(standin_manifest, downloaded_cache):
    with pytest.raises(CacheIncompleteError) as info:
        plan_publish(standin_manifest, downloaded_cache, [VLLM, H100])
    message = str(info.value)
    assert "rank0.engine" in message and f"download-to-cache --profiles {H100}" in message


def test_broken_link_is_missing(standin_manifest, downloaded_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(downloaded_cache, cache, symlinks=True)
    model = cache / "ngc/hub/models--nim--meta--llama-3.2-1b-instruct"
    target = (model / "snapshots" / catalog.HF_TAG / "tokenizer.json").resolve()
    target.unlink()
    with pytest.raises(CacheIncompleteError, match="tokenizer.json"):
        plan_publish(standin_manifest, cache, [VLLM])


def test_underscored_model_folder_spelling(standin_manifest, downloaded_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(downloaded_cache, cache, symlinks=True)
    hub = cache / "ngc/hub"
    os.rename(hub / "models--nim--meta--llama-3.2-1b-instruct", hub / "models--nim--meta--llama-3_2-1b-instruct")
    assert len(plan_publish(standin_manifest, cache, [VLLM]).objects) == len(catalog.HF_FILES)


def test_unknown_profile_id(standin_manifest, downloaded_cache):
    with pytest.raises(InputError, match="no profile"):
        plan_publish(standin_manifest, downloaded_cache, ["0" * 64])
