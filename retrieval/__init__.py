"""Retrieval: knowledge-base loading and chunking, embeddings, a persisted FAISS index, search."""
