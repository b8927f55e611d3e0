"""Attribution: which provider organization a member belongs to, by declarative methods."""
