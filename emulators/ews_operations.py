"""The EWS operations the emulator serves, each turning a request element into its `{Operation}Response`.

GetFolder, FindItem (CalendarView, IndexedPageItemView), GetItem, CreateItem, UpdateItem, DeleteItem,
Subscribe, GetEvents, Unsubscribe and SyncFolderItems; GetStreamingEvents is HTTP-level (ews_streaming.py).
Each item in a request gets its own ResponseMessage, so one bad id fails alone, as in Exchange.

Limits as Exchange has them: a CalendarView spans at most two years (ErrorCalendarViewRangeTooBig) and does not
page: more items than the find-count limit (EWSFindCountLimit, 1000 by default; settable) answer
ErrorExceededFindCountLimit, whose MessageXml carries the PolicyLimit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from emulators import ews_throttling
from emulators.ews_items import Owner, Shape, ews_error, item_payload, render_item, update_payload
from emulators.ews_model import FOLDERS, EwsMailbox, ItemEvent, Organisation, SentMail, new_moved_id
from emulators.ews_subscriptions import EVENT_TYPES, Subscriptions, watermark
from emulators.ews_xml import (
    EwsError,
    children,
    error_message,
    format_instant,
    local_name,
    m,
    operation_response,
    parse_instant,
    sub,
    success,
    t,
    text_of,
)
from emulators.graph_common import GraphError
from emulators.graph_events import Instance, single

_SENDING = ("SendOnlyToAll", "SendToAllAndSaveCopy", "SendOnlyToChanged", "SendToChangedAndSaveCopy")


@dataclass
class Context:
    """Who is asking about which mailbox, in which time zone (the TimeZoneContext header)."""

    mailbox: EwsMailbox
    account: str
    time_zone: str
    impersonating: bool = False  # decides whose throttling budget the request is charged to

    @property
    def budget(self) -> str:
        return ews_throttling.budget(self.account, self.mailbox.address, impersonating=self.impersonating)


class Operations:
    def __init__(self, org: Organisation, subscriptions: Subscriptions, *, find_count_limit: int = 1000) -> None:
        self.org = org
        self.subscriptions = subscriptions
        self.find_count_limit = find_count_limit
        self.handlers: dict[str, Callable[[Context, ET.Element], ET.Element]] = {
            "GetFolder": self.get_folder,
            "FindItem": self.find_item,
            "GetItem": self.get_item,
            "CreateItem": self.create_item,
            "UpdateItem": self.update_item,
            "DeleteItem": self.delete_item,
            "Subscribe": self.subscribe,
            "GetEvents": self.get_events,
            "Unsubscribe": self.unsubscribe,
            "SyncFolderItems": self.sync_folder_items,
        }

    # -- folders ---------------------------------------------------------------------------------------------

    def folder_name(self, ctx: Context, elem: ET.Element) -> str:
        """The distinguished name of the folder a DistinguishedFolderId / FolderId names in this mailbox."""
        if elem.tag == t("DistinguishedFolderId"):
            name = elem.get("Id", "")
            if name in FOLDERS:
                return name
        elif elem.tag == t("FolderId"):
            found = ctx.mailbox.folder_name(elem.get("Id", ""))
            if found is not None:
                return found
        raise EwsError("ErrorFolderNotFound", "The specified folder could not be found in the store.")

    def get_folder(self, ctx: Context, request: ET.Element) -> ET.Element:
        messages = []
        for folder_id in children(request, m("FolderIds")):
            try:
                name = self.folder_name(ctx, folder_id)
            except EwsError as error:
                messages.append(error_message("GetFolder", error))
                continue
            message = success("GetFolder")
            kind, folder_class, display = FOLDERS[name]
            folder = sub(sub(message, m("Folders")), t(kind))
            folder_ref = ctx.mailbox.folder_ref(name)
            sub(folder, t("FolderId"), Id=folder_ref[0], ChangeKey=folder_ref[1])
            if name != "root":
                parent = ctx.mailbox.folder_ref("root" if name == "msgfolderroot" else "msgfolderroot")
                sub(folder, t("ParentFolderId"), Id=parent[0], ChangeKey=parent[1])
            if folder_class:
                sub(folder, t("FolderClass"), folder_class)
            sub(folder, t("DisplayName"), display)
            stored = len(ctx.mailbox.calendar.events) if name == "calendar" else 0
            sub(folder, t("TotalCount"), str(stored))
            sub(folder, t("ChildFolderCount"), "0")
            if kind == "Folder":
                sub(folder, t("UnreadCount"), "0")
            messages.append(message)
        return operation_response("GetFolder", messages)

    # -- reading -----------------------------------------------------------------------------------------------

    def find_item(self, ctx: Context, request: ET.Element) -> ET.Element:
        try:
            message = self._find_items(ctx, request)
        except EwsError as error:
            message = error_message("FindItem", error)
        return operation_response("FindItem", [message])

    def _find_items(self, ctx: Context, request: ET.Element) -> ET.Element:
        shape = Shape.parse(request.find(m("ItemShape")))
        parents = list(children(request, m("ParentFolderIds")))
        names = {self.folder_name(ctx, parent) for parent in parents}
        if request.find(m("Restriction")) is not None:
            raise EwsError("ErrorUnsupportedQueryFilter", "The EWS emulator does not evaluate restrictions.")
        calendar = ctx.mailbox.calendar
        view = request.find(m("CalendarView"))
        message = success("FindItem")
        root = sub(message, m("RootFolder"))
        if view is not None:
            instances = self._calendar_view(ctx, view) if "calendar" in names else []
            limit = int(view.get("MaxEntriesReturned", "0") or 0)
            shown = instances[:limit] if limit else instances
            if len(shown) > self.find_count_limit:
                raise EwsError(
                    "ErrorExceededFindCountLimit",
                    "You have exceeded the maximum number of objects that can be returned for the find operation. "
                    "Use paging to reduce the result size and try your request again.",
                    values={"PolicyLimit": str(self.find_count_limit)},
                )
            root.set("TotalItemsInView", str(len(instances)))
            root.set("IncludesLastItemInRange", "true" if len(shown) == len(instances) else "false")
        else:
            stored = sorted(calendar.events.values(), key=lambda event: event.created) if "calendar" in names else []
            instances = [single(event) for event in stored]
            paging = request.find(m("IndexedPageItemView"))
            offset = int(paging.get("Offset", "0")) if paging is not None else 0
            limit = int(paging.get("MaxEntriesReturned", "0") or 0) if paging is not None else 0
            if paging is not None and paging.get("BasePoint") == "End":
                instances.reverse()
            window = instances[offset:]
            shown = window[:limit] if limit else window
            if len(shown) > self.find_count_limit:
                shown = shown[: self.find_count_limit]
            root.set("IndexedPagingOffset", str(offset + len(shown)))
            root.set("TotalItemsInView", str(len(instances)))
            root.set("IncludesLastItemInRange", "true" if offset + len(shown) >= len(instances) else "false")
        items = sub(root, t("Items"))
        for instance in shown:
            items.append(self._render(ctx, instance, shape))
        return message

    def _calendar_view(self, ctx: Context, view: ET.Element) -> list[Instance]:
        low = parse_instant(view.get("StartDate", ""))
        high = parse_instant(view.get("EndDate", ""))
        if high < low:
            raise EwsError("ErrorCalendarEndDateIsEarlierThanStartDate", "EndDate is earlier than StartDate")
        if high > _two_years_after(low):
            raise EwsError(
                "ErrorCalendarViewRangeTooBig", "The specified view range exceeds the maximum range of two years."
            )
        return ctx.mailbox.calendar.instances(low, high)

    def get_item(self, ctx: Context, request: ET.Element) -> ET.Element:
        shape = Shape.parse(request.find(m("ItemShape")))
        messages = []
        for item_id in children(request, m("ItemIds")):
            try:
                instance = self._resolve(ctx, item_id)
                message = success("GetItem")
                sub(message, m("Items")).append(self._render(ctx, instance, shape))
            except EwsError as error:
                message = error_message("GetItem", error)
            messages.append(message)
        return operation_response("GetItem", messages)

    def _resolve(self, ctx: Context, item_id: ET.Element) -> Instance:
        calendar = ctx.mailbox.calendar
        try:
            if item_id.tag == t("ItemId"):
                return calendar.get(item_id.get("Id", ""))
            if item_id.tag == t("RecurringMasterItemId"):
                instance = calendar.get(item_id.get("OccurrenceId", ""))
                master_id = instance.master_id
                if master_id is None:
                    raise EwsError("ErrorItemNotFound", "The specified object was not found in the store.")
                return calendar.get(master_id)
        except GraphError as error:
            raise ews_error(error) from None
        raise EwsError("ErrorInvalidOperation", f"The EWS emulator does not support {local_name(item_id.tag)}.")

    def _render(self, ctx: Context, instance: Instance, shape: Shape) -> ET.Element:
        owner = Owner(ctx.mailbox.address, ctx.mailbox.display_name)
        return render_item(
            ctx.mailbox.calendar, instance, shape, owner=owner, parent_folder=ctx.mailbox.folder_ref("calendar")
        )

    # -- writing -----------------------------------------------------------------------------------------------

    def create_item(self, ctx: Context, request: ET.Element) -> ET.Element:
        disposition = request.get("MessageDisposition", "SaveOnly")
        invitations = request.get("SendMeetingInvitations")
        messages = []
        for item in children(request, m("Items")):
            try:
                message = success("CreateItem")
                items = sub(message, m("Items"))
                if item.tag == t("CalendarItem"):
                    if invitations is None:
                        raise EwsError(
                            "ErrorSendMeetingInvitationsRequired",
                            "The SendMeetingInvitations attribute is required for calendar items.",
                        )
                    items.append(self._create_calendar_item(ctx, item, invitations))
                elif item.tag == t("Message"):
                    self._send_message(ctx, item, disposition)
                    if disposition != "SendOnly":
                        sub(
                            sub(items, t("Message")),
                            t("ItemId"),
                            Id=new_moved_id(),
                            ChangeKey=self.org.new_change_key(),
                        )
                else:
                    raise EwsError("ErrorInvalidItemForOperation", f"{local_name(item.tag)} items are not supported.")
            except EwsError as error:
                message = error_message("CreateItem", error)
            messages.append(message)
        return operation_response("CreateItem", messages)

    def _create_calendar_item(self, ctx: Context, item: ET.Element, invitations: str) -> ET.Element:
        calendar = ctx.mailbox.calendar
        payload = item_payload(item, ctx.time_zone)
        try:
            event, _ = calendar.create(payload)
        except GraphError as error:
            raise ews_error(error) from None
        if invitations in _SENDING:
            self._mail_attendees(ctx, event.props, "MeetingRequest")
        created = sub_free(t("CalendarItem"))
        sub(created, t("ItemId"), Id=event.id, ChangeKey=event.change_key)
        return created

    def _send_message(self, ctx: Context, item: ET.Element, disposition: str) -> None:
        if disposition not in ("SendOnly", "SendAndSaveCopy"):
            return

        def addresses(tag: str) -> list[str]:
            found = item.find(t(tag))
            return [
                text_of(mailbox, t("EmailAddress"), "") or "" for mailbox in (list(found) if found is not None else [])
            ]

        self.org.sent_mail.append(
            SentMail(
                sender=ctx.mailbox.address,
                kind="Message",
                subject=text_of(item, t("Subject"), "") or "",
                body=text_of(item, t("Body"), "") or "",
                to=addresses("ToRecipients"),
                cc=addresses("CcRecipients"),
                bcc=addresses("BccRecipients"),
            )
        )

    def _mail_attendees(self, ctx: Context, props: dict[str, object], kind: str) -> None:
        attendees = props.get("attendees") or []
        assert isinstance(attendees, list)
        to = [str((a.get("emailAddress") or {}).get("address", "")) for a in attendees]
        if to and props.get("isOrganizer", True) is not False:
            subject = str(props.get("subject", ""))
            self.org.sent_mail.append(SentMail(ctx.mailbox.address, kind, subject, "", to=to))

    def update_item(self, ctx: Context, request: ET.Element) -> ET.Element:
        resolution = request.get("ConflictResolution", "AutoResolve")
        sending = request.get("SendMeetingInvitationsOrCancellations", "SendToNone")
        messages = []
        for change in children(request, m("ItemChanges")):
            try:
                message = self._update_one(ctx, change, resolution, sending)
            except EwsError as error:
                message = error_message("UpdateItem", error)
            messages.append(message)
        return operation_response("UpdateItem", messages)

    def _update_one(self, ctx: Context, change: ET.Element, resolution: str, sending: str) -> ET.Element:
        item_id = change.find(t("ItemId"))
        if item_id is None:
            raise EwsError("ErrorInvalidOperation", "The EWS emulator updates items by ItemId only.")
        calendar = ctx.mailbox.calendar
        current = self._resolve(ctx, item_id)
        updates = change.find(t("Updates"))
        update = update_payload(
            updates if updates is not None else ET.Element("x"), current.start.zone_name, ctx.time_zone
        )
        # AlwaysOverwrite ignores the change key; AutoResolve and NeverOverwrite refuse a stale one (Exchange
        # merges some AutoResolve conflicts, never one on a property both sides changed; the bridge relies on
        # the refusal).
        if_match = item_id.get("ChangeKey") if resolution != "AlwaysOverwrite" else None
        try:
            updated = calendar.update(item_id.get("Id", ""), update.payload, if_match=if_match)
        except GraphError as error:
            raise ews_error(error) from None
        for property_id in update.removed_extended:
            updated.event.extended.pop(property_id.lower(), None)
        if sending in _SENDING:
            self._mail_attendees(ctx, updated.event.props, "MeetingRequest")
        message = success("UpdateItem")
        item = sub(sub(message, m("Items")), t("CalendarItem"))
        sub(item, t("ItemId"), Id=updated.id, ChangeKey=updated.change_key)
        sub(sub(message, m("ConflictResults")), t("Count"), "0")
        return message

    def delete_item(self, ctx: Context, request: ET.Element) -> ET.Element:
        delete_type = request.get("DeleteType", "MoveToDeletedItems")
        cancellations = request.get("SendMeetingCancellations", "SendToNone")
        messages = []
        for item_id in children(request, m("ItemIds")):
            try:
                instance = self._resolve(ctx, item_id)
                if cancellations in _SENDING:
                    self._mail_attendees(ctx, instance.event.props, "MeetingCancellation")
                ctx.mailbox.delete_type = delete_type
                try:
                    ctx.mailbox.calendar.delete(instance.id)
                except GraphError as error:
                    raise ews_error(error) from None
                finally:
                    ctx.mailbox.delete_type = "MoveToDeletedItems"
                messages.append(success("DeleteItem"))
            except EwsError as error:
                messages.append(error_message("DeleteItem", error))
        return operation_response("DeleteItem", messages)

    # -- notifications -----------------------------------------------------------------------------------------

    def subscribe(self, ctx: Context, request: ET.Element) -> ET.Element:
        try:
            message = self._subscribe(ctx, request)
        except EwsError as error:
            message = error_message("Subscribe", error)
        return operation_response("Subscribe", [message])

    def _subscribe(self, ctx: Context, request: ET.Element) -> ET.Element:
        kinds = {"PullSubscriptionRequest": "pull", "StreamingSubscriptionRequest": "streaming"}
        body = request[0] if len(request) else None
        if body is None or local_name(body.tag) not in kinds:
            raise EwsError(
                "ErrorInvalidSubscriptionRequest", "The EWS emulator serves pull and streaming subscriptions."
            )
        kind = kinds[local_name(body.tag)]
        folders: frozenset[str] | None = None
        if body.get("SubscribeToAllFolders") != "true":
            folders = frozenset(self.folder_name(ctx, folder) for folder in children(body, t("FolderIds")))
            if not folders:
                raise EwsError("ErrorMissingArgument", "FolderIds are required unless SubscribeToAllFolders is set.")
        types = frozenset(e.text or "" for e in children(body, t("EventTypes")))
        if not types or not types <= set(EVENT_TYPES) | {"StatusEvent"}:
            raise EwsError("ErrorInvalidSubscriptionRequest", "The event types are missing or not valid.")
        timeout = int(text_of(body, t("Timeout"), "30") or 30)
        if kind == "pull" and not 1 <= timeout <= 1440:
            raise EwsError("ErrorInvalidPullSubscriptionId", "The pull subscription timeout must be 1 to 1440 minutes.")
        since = text_of(body, t("Watermark")) or text_of(body, m("Watermark"))
        subscription = self.subscriptions.subscribe(
            ctx.mailbox,
            kind=kind,
            owner=ctx.account,
            folders=folders,
            event_types=types,
            timeout_minutes=timeout,
            since=since,
            budget=ctx.budget,
        )
        message = success("Subscribe")
        sub(message, m("SubscriptionId"), subscription.id)
        if kind == "pull":
            sub(message, m("Watermark"), watermark(ctx.mailbox.address, subscription.position))
        return message

    def get_events(self, ctx: Context, request: ET.Element) -> ET.Element:
        try:
            subscription_id = text_of(request, m("SubscriptionId"), "") or ""
            subscription = self.subscriptions.get(subscription_id, ctx.account, kind="pull")
            events, previous, more = self.subscriptions.pull(subscription, text_of(request, m("Watermark"), "") or "")
            message = success("GetEvents")
            notification = sub(message, m("Notification"))
            sub(notification, t("SubscriptionId"), subscription.id)
            sub(notification, t("PreviousWatermark"), watermark(subscription.mailbox, previous))
            sub(notification, t("MoreEvents"), "true" if more else "false")
            for seq, event in events:
                render_event(notification, ctx.mailbox, event, watermark(subscription.mailbox, seq))
            if events:
                subscription.position = max(subscription.position, events[-1][0])
            else:
                subscription.position = max(subscription.position, ctx.mailbox.seq)
                status = sub(notification, t("StatusEvent"))
                sub(status, t("Watermark"), watermark(subscription.mailbox, subscription.position))
        except EwsError as error:
            message = error_message("GetEvents", error)
        return operation_response("GetEvents", [message])

    def unsubscribe(self, ctx: Context, request: ET.Element) -> ET.Element:
        try:
            subscription_id = text_of(request, m("SubscriptionId"), "") or ""
            self.subscriptions.get(subscription_id, ctx.account)
            self.subscriptions.remove(subscription_id.strip())
            message = success("Unsubscribe")
        except EwsError as error:
            message = error_message("Unsubscribe", error)
        return operation_response("Unsubscribe", [message])

    # -- sync --------------------------------------------------------------------------------------------------

    def sync_folder_items(self, ctx: Context, request: ET.Element) -> ET.Element:
        try:
            message = self._sync(ctx, request)
        except EwsError as error:
            message = error_message("SyncFolderItems", error)
            # Exchange keeps both elements in an error answer, and exchangelib reads them from every message.
            sub(message, m("SyncState"), "")
            sub(message, m("IncludesLastItemInRange"), "true")
        return operation_response("SyncFolderItems", [message])

    def _sync(self, ctx: Context, request: ET.Element) -> ET.Element:
        shape = Shape.parse(request.find(m("ItemShape")))
        folder = request.find(m("SyncFolderId"))
        name = self.folder_name(ctx, folder[0]) if folder is not None and len(folder) else "calendar"
        mailbox = ctx.mailbox
        since = mailbox.parse_sync_state(text_of(request, m("SyncState")))
        limit = int(text_of(request, m("MaxChangesReturned"), "512") or 512)
        if not 1 <= limit <= 512:
            raise EwsError("ErrorInvalidArgument", "MaxChangesReturned must be between 1 and 512.")
        if name == "calendar":
            changes, position, complete = mailbox.changes_since(since, limit)
        else:
            changes, position, complete = [], since, True
        message = success("SyncFolderItems")
        sub(message, m("SyncState"), mailbox.sync_state(position))
        sub(message, m("IncludesLastItemInRange"), "true" if complete else "false")
        container = sub(message, m("Changes"))
        for kind, item_id in changes:
            change = sub(container, t(kind))
            if kind == "Delete":
                sub(change, t("ItemId"), Id=item_id)
                continue
            change.append(self._render(ctx, mailbox.calendar.get(item_id), shape))
        return message


def render_event(parent: ET.Element, mailbox: EwsMailbox, event: ItemEvent, mark: str) -> None:
    """One CreatedEvent / ModifiedEvent / DeletedEvent / MovedEvent of a notification."""
    elem = sub(parent, t(f"{event.kind}Event"))
    sub(elem, t("Watermark"), mark)
    sub(elem, t("TimeStamp"), format_instant(event.at))
    sub(elem, t("ItemId"), Id=event.item_id, ChangeKey=event.change_key)
    folder = mailbox.folder_ref(event.folder)
    sub(elem, t("ParentFolderId"), Id=folder[0], ChangeKey=folder[1])
    if event.old_item_id is not None and event.old_folder is not None:
        sub(elem, t("OldItemId"), Id=event.old_item_id, ChangeKey=event.change_key)
        old = mailbox.folder_ref(event.old_folder)
        sub(elem, t("OldParentFolderId"), Id=old[0], ChangeKey=old[1])


def sub_free(tag: str) -> ET.Element:
    return ET.Element(tag)


def _two_years_after(value: datetime) -> datetime:
    try:
        return value.replace(year=value.year + 2)
    except ValueError:  # 29 February
        return value.replace(year=value.year + 2, day=28) + timedelta(days=1)
