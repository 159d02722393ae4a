"""Memory for agents: the encrypted vault, the embedded vector store, embedding models and RAG.

>>> import kai.memory
>>> embedder = kai.memory.EmbeddingModel.hashing(64)   # or EmbeddingModel("openai:text-embedding-3-small", 1536)
"""

from kai._kai import EmbeddedStore, EmbeddingModel, Retriever, StoreError, Vault, VaultError, VectorIndex

__all__ = ["EmbeddedStore", "EmbeddingModel", "Retriever", "StoreError", "Vault", "VaultError", "VectorIndex"]
