"""Campaign Continuity: bulk WhatsApp campaigns that are never lost and never sent twice."""
