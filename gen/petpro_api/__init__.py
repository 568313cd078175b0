"""Generated PetPro contracts (``make gen``; do not edit).

``petpro_api.<domain>.v1`` holds the modules protoc generates from ``protos/petpro/<domain>/v1``; the
proto packages and wire names are ``petpro.<domain>.v1``.  ``petpro.binpb`` beside this file is the
FileDescriptorSet of every contract with imports and source info.
"""
