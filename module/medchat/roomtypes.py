"""The MedChat room kinds that Matrix carries in `m.room.create`'s `type`, so every server and
client can tell them apart (plain chats have no type; Matrix spaces are `m.space`)."""

CASE_ROOM = "org.medchat.case"
STUDY_GROUP = "org.medchat.study_group"
SPACE = "m.space"

# `m.room.create` content key naming the institution a space or study group belongs to: fixed at
# creation, readable by every server and client.
INSTITUTION_KEY = "org.medchat.institution"

# The API's `type` of a room whose `m.room.create` has a type (plain rooms are direct or group).
KIND_OF_TYPE = {CASE_ROOM: "case", STUDY_GROUP: "study_group", SPACE: "space"}
