"""The MedChat room kinds that Matrix carries in `m.room.create`'s `type`, so every server and
client can tell them apart (plain chats have no type; Matrix spaces are `m.space`)."""

CASE_ROOM = "org.medchat.case"
STUDY_GROUP = "org.medchat.study_group"
SPACE = "m.space"
