"""The vault, the embedded vector store and RAG from Python."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import kai
from kai.memory import EmbeddedStore, EmbeddingModel, Retriever, Vault, VectorIndex
from kai.testing import ScriptedModel, tool_call
from conftest import run, tool_results

FAST = {"alg": "pbkdf2-sha256", "iterations": 1000}


def test_a_vault_keeps_secrets_and_records_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "agent.vault"
    with Vault.create(path, "correct horse", kdf=FAST) as vault:
        vault.put_secret("openai", "sk-123")
        vault.put_record("profile", {"name": "Ada", "langs": ["en", "fr"]})
        assert vault.secret_names() == ["openai"]
    with Vault.open(path, "correct horse") as vault:
        assert vault.secret("openai") == "sk-123"
        assert vault.secret("missing") is None
        assert vault.record("profile") == {"name": "Ada", "langs": ["en", "fr"]}
        assert vault.remove("openai") is True
        assert vault.secret("openai") is None
    assert b"sk-123" not in path.read_bytes() and b"Ada" not in path.read_bytes()


def test_a_wrong_passphrase_a_second_writer_and_a_closed_vault_are_typed_errors(tmp_path: Path) -> None:
    path = tmp_path / "agent.vault"
    vault = Vault.create(path, "right", kdf=FAST)
    with pytest.raises(kai.VaultError) as locked:
        Vault.open(path, "right")
    assert locked.value.kind == "locked"
    vault.close()
    with pytest.raises(kai.VaultError) as wrong:
        Vault.open(path, "wrong")
    assert wrong.value.kind == "wrong_passphrase" and isinstance(wrong.value, kai.KaiError)
    with pytest.raises(kai.ConfigError):
        vault.secret("x")
    with pytest.raises(kai.VaultError) as exists:
        Vault.create(path, "again", kdf=FAST)
    assert exists.value.kind == "already_exists"


def test_a_tampered_vault_and_a_backup_with_its_own_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "agent.vault"
    backup = tmp_path / "backup.vault"
    with Vault.create(path, "live", kdf=FAST) as vault:
        vault.put_secret("token", "t-1")
        vault.export(backup, "backup", kdf=FAST)
    with pytest.raises(kai.VaultError):
        Vault.open(backup, "live")
    with Vault.create(tmp_path / "new.vault", "new", kdf=FAST) as fresh:
        assert fresh.import_backup(backup, "backup") == 1
        assert fresh.secret("token") == "t-1"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(kai.VaultError) as tampered:
        Vault.open(path, "live")
    assert tampered.value.kind == "tampered"


def test_the_store_searches_with_filters_and_persists(tmp_path: Path) -> None:
    async def fill() -> None:
        with EmbeddedStore(tmp_path / "store", 3) as store:
            await store.upsert(
                [
                    {"id": "a", "text": "cats", "embedding": [1.0, 0.0, 0.0], "metadata": {"lang": "en", "year": 2020}},
                    {"id": "b", "text": "chats", "embedding": [0.9, 0.1, 0.0], "metadata": {"lang": "fr", "year": 2021}},
                    {"id": "c", "text": "dogs", "embedding": [0.0, 1.0, 0.0], "metadata": {"lang": "en", "year": 2022}},
                ]
            )
            hits = await store.search([1.0, 0.0, 0.0], 2)
            assert [hit["id"] for hit in hits] == ["a", "b"]
            assert hits[0]["distance"] < hits[1]["distance"]
            english = await store.search([1.0, 0.0, 0.0], 2, where={"lang": "en"})
            assert [hit["id"] for hit in english] == ["a", "c"]
            recent = await store.search([1.0, 0.0, 0.0], 3, where={"op": "gt", "key": "year", "value": 2020})
            assert [hit["id"] for hit in recent] == ["b", "c"]
            assert await store.delete(["b", "zzz"]) == 1
            with pytest.raises(kai.StoreError) as wrong:
                await store.upsert([{"id": "d", "text": "x", "embedding": [1.0, 0.0]}])
            assert wrong.value.kind == "dimension_mismatch"

    async def reopen() -> None:
        with EmbeddedStore(tmp_path / "store", 3) as store:
            assert await store.count() == 2
            document = await store.get("c")
            assert document is not None and document["metadata"]["year"] == 2022
            assert await store.get("b") is None

    run(fill())
    run(reopen())


NOTES = """# Trip
We fly to Lisbon on the 14th of May and stay at the Alfama guesthouse.

# Budget
The budget for the whole trip is 3120 euros, flights included.
"""


def test_rag_ingests_idempotently_and_retrieves_as_a_tool(tmp_path: Path) -> None:
    async def main() -> None:
        with EmbeddedStore(tmp_path / "rag", 64) as store:
            retriever = Retriever(store, EmbeddingModel.hashing(64), top_k=1)
            first = await retriever.ingest("notes.md", NOTES, metadata={"owner": "ada"}, chunk_size=120, overlap=0, markdown=True)
            assert first["chunks"] == 2 and first["written"] == 2
            again = await retriever.ingest("notes.md", NOTES, metadata={"owner": "ada"}, chunk_size=120, overlap=0, markdown=True)
            assert again["unchanged"] == 2 and again["written"] == 0
            [hit] = await retriever.retrieve("budget for the whole trip in euros")
            assert "3120" in hit["text"] and hit["metadata"]["source"] == "notes.md"

            model = ScriptedModel([tool_call("search_documents", query="trip budget euros"), "3120 euros"])
            agent = kai.Agent(model, tools=[retriever.as_tool()])
            assert (await agent.run("What is the budget?")).output == "3120 euros"
            assert "3120" in tool_results(model)[0]["content"]

    run(main())


def test_reading_a_vault_while_another_thread_derives_a_key_does_not_deadlock(tmp_path: Path) -> None:
    vault = Vault.create(tmp_path / "v.vault", "old", kdf=FAST)
    vault.put_secret("k", "v")
    slow = {"alg": "pbkdf2-sha256", "iterations": 1_500_000}
    changer = threading.Thread(target=lambda: vault.change_passphrase("new", kdf=slow))
    changer.start()
    assert vault.secret("k") == "v"  # waits for the change, without holding the GIL
    changer.join(timeout=60)
    assert not changer.is_alive()
    vault.close()
    with Vault.open(tmp_path / "v.vault", "new") as reopened:
        assert reopened.secret("k") == "v"


@pytest.mark.parametrize("quantization", ["int8", "int4", "pq8"])
def test_a_quantized_index_and_store_search_compressed_vectors(tmp_path: Path, quantization: str) -> None:
    random = __import__("random").Random(5)
    vectors = [[random.gauss(0.0, 1.0) for _ in range(16)] for _ in range(5_000)]
    index = VectorIndex(16, metric="l2", quantization=quantization)
    index.add(list(range(5_000)), vectors)
    for probe in (3, 1_234, 4_999):
        assert index.search(vectors[probe], 1, ef=128)[0][0] == probe
    index.save(tmp_path / "compressed.idx")
    assert VectorIndex.open(tmp_path / "compressed.idx").search(vectors[77], 1, ef=128)[0][0] == 77
    with pytest.raises(kai.StoreError) as unknown:
        VectorIndex(16, quantization="zip")
    assert unknown.value.kind == "invalid_config"
    with pytest.raises(kai.KaiError):
        VectorIndex(16, kind="flat", quantization="int8")

    async def store() -> None:
        with EmbeddedStore(tmp_path / "store", 16, metric="l2", quantization=quantization) as store:
            await store.upsert([{"id": f"v{i}", "text": "", "embedding": vectors[i]} for i in range(300)])
            assert [hit["id"] for hit in await store.search(vectors[42], 1)] == ["v42"]

    run(store())


@pytest.mark.parametrize("kind", ["hnsw", "flat"])
def test_a_vector_index_finds_neighbours_saves_and_refuses_bad_vectors(tmp_path: Path, kind: str) -> None:
    index = VectorIndex(3, metric="l2", kind=kind)
    index.add([1, 2, 3], [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    assert [hit[0] for hit in index.search([0.9, 0.0, 0.0], 2)] == [2, 1]
    with pytest.raises(kai.StoreError) as bad:
        index.add([4, 5], [[1.0, 1.0, 1.0], [float("nan"), 0.0, 0.0]])
    assert bad.value.kind == "invalid_vector" and len(index) == 3
    with pytest.raises(kai.StoreError):
        index.search([1.0, 0.0], 1)
    assert index.remove(3) is True and len(index) == 2
    index.save(tmp_path / "vectors.idx")
    reopened = VectorIndex.open(tmp_path / "vectors.idx")
    assert [hit[0] for hit in reopened.search([0.0, 0.1, 0.0], 1)] == [1]
    (tmp_path / "garbage.idx").write_bytes(b"not an index at all" * 10)
    with pytest.raises(kai.StoreError):
        VectorIndex.open(tmp_path / "garbage.idx")
